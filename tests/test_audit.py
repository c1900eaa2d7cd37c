"""`pairaug audit` round trip on the tiny pipeline: registered model → exactly its synthetic pairs, every
image hash verified; an altered image shows up as modified; `--pair` finds the runs that used a pair."""

from __future__ import annotations

import json
import shutil
import sys
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from conftest import run

pytestmark = pytest.mark.slow


def pairaug(repo: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "pairaug.cli", *args], repo, check=check)


@pytest.fixture
def repo(tiny_repo, tmp_path) -> Path:
    """A copy: the tests set aliases and alter an image, the session's tiny repository stays as built."""
    return Path(shutil.copytree(tiny_repo, tmp_path / "repo", symlinks=True))


def synthetic_ids(repo: Path, mix: str) -> set[str]:
    used = pd.read_parquet(repo / "models" / "vlp" / mix / "training_pairs.parquet")
    return set(used.loc[used["branch"] != "real", "pair_id"])


def test_registered_model_audit_round_trip(repo):
    out = pairaug(repo, "model", "alias", "set", "champion", "--mix", "pairaug")
    assert "pairaug-vlp@champion -> version" in out.stdout
    report = json.loads(pairaug(repo, "audit", "models:/pairaug-vlp@champion", "--format", "json").stdout)
    pairs = pd.DataFrame(report["pairs"])
    expected = synthetic_ids(repo, "pairaug")
    assert expected and set(pairs["pair_id"]) == expected and len(pairs) == len(expected)
    validated = pd.read_parquet(repo / "data/validated/pairs.parquet").set_index("pair_id")
    assert (pairs.set_index("pair_id")["image_sha256"] == validated.loc[list(pairs["pair_id"]), "image_sha256"]).all()
    assert set(pairs["branch"]) == {"inter", "intra"}
    assert (pairs["status"] == "verified").all() and (pairs["dvc_cache"] == "ok").all()
    assert report["mix"] == "pairaug" and report["not_verified"] == 0
    assert report["revision"]["git_commit"]  # the commit the run was made at
    # The same answer from the model folder, against the workspace and dvc.lock.
    folder = pd.read_csv(StringIO(pairaug(repo, "audit", "models/vlp/pairaug", "--format", "csv").stdout))
    assert set(folder["pair_id"]) == expected and (folder["status"] == "verified").all()


def test_an_altered_image_is_reported_as_modified(repo):
    pairs = pd.read_parquet(repo / "data/validated/pairs.parquet")
    victim = pairs[pairs["branch"] == "inter"].iloc[0]
    image = repo / "data" / "validated" / victim["image"]
    image.chmod(0o644)  # DVC may leave cached files read-only
    image.write_bytes(image.read_bytes() + b"\0")
    proc = pairaug(repo, "audit", "models/vlp/inter", "--format", "csv", check=False)
    assert proc.returncode == 1 and f"{victim['pair_id']} (modified)" in proc.stderr
    table = pd.read_csv(StringIO(proc.stdout)).set_index("pair_id")
    assert table.loc[victim["pair_id"], "status"] == "modified"
    assert table.loc[victim["pair_id"], "dvc_cache"] == "ok"  # the cache still holds what trained the model
    assert (table.drop(index=victim["pair_id"])["status"] == "verified").all()


def test_pair_lookup_names_the_runs_and_models_that_used_it(repo):
    pair_id = sorted(synthetic_ids(repo, "intra"))[0]
    report = json.loads(pairaug(repo, "audit", "--pair", pair_id, "--format", "json").stdout)
    used = pd.DataFrame(report["used_by"])
    runs = used[used["where"] == "mlflow run"]
    assert sorted(runs["mix"]) == ["intra", "pairaug"]  # the mixes with the intra branch
    assert all(v.startswith("pairaug-vlp/") for v in runs["model_versions"])
    assert sorted(used.loc[used["where"] == "workspace", "mix"]) == ["intra", "pairaug"]
    assert report["origin"]["branch"] == "intra" and report["origin"]["kept"] is True
    table = pairaug(repo, "audit", "--pair", pair_id).stdout
    assert "used by 4 run(s) / model folder(s)" in table


def test_unknown_targets_fail_with_a_clear_line(repo):
    proc = pairaug(repo, "audit", "models:/pairaug-vlp/999", check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: no registered model version")
    proc = pairaug(repo, "audit", "not a model", check=False)
    assert proc.returncode == 2 and "cannot read 'not a model'" in proc.stderr


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
