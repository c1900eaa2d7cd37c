"""`dvc repro` after a param change reruns only what the change touches, down to the mix."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
import yaml
from conftest import run


@pytest.mark.slow
def test_prune_change_retrains_only_the_mixes_whose_pairs_changed(tiny_repo, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo, symlinks=True)
    lock_before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    # A τ at the median inter S_a: about half the inter pairs change side; intra pairs use their own rule.
    cands = pd.read_parquet(repo / "data/pruned/candidates.parquet")
    tau = float(cands.loc[cands["branch"] == "inter", "s_a"].median())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["prune"]["inter_tau"] = tau
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    out = run(["dvc", "repro"], repo).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert {"prune", "validate", "pretrain@pairaug", "evaluate@pairaug", "report"} <= ran, out
    # `none` trains on real pairs only, `intra` pairs are pruned by S1-S3 and the pool does not move:
    # their manifests did not change, so none of those models is retrained; no generator reruns.
    assert not ran & {"pretrain@none", "pretrain@intra", "pretrain@pool_real", "evaluate@none", "evaluate@intra"}, out
    assert not {s for s in ran if s.endswith("generate") or s.startswith("fit-")}, out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert lock["pretrain@intra"] == lock_before["pretrain@intra"]
    assert "up to date" in run(["dvc", "status"], repo).stdout
