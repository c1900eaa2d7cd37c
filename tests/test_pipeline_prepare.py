"""`dvc repro prepare` end to end in a repository copy on tiny params: no-op reruns, param-driven reruns."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import run

pytestmark = pytest.mark.slow


def dvc(repo: Path, *args: str) -> str:
    """Run dvc in `repo` with its state kept inside the test's folders; return stdout + stderr."""
    state = repo.parent / "dvc-state"
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(state / "site"),
           "DVC_GLOBAL_CONFIG_DIR": str(state / "global"), "DVC_SYSTEM_CONFIG_DIR": str(state / "system")}
    proc = run(["dvc", *args], repo, env=env, timeout=600)
    return proc.stdout + proc.stderr


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def edit_params(repo: Path, edit) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_second_repro_does_nothing(fresh_repo: Path) -> None:
    out = dvc(fresh_repo, "repro", "prepare")
    assert "Running stage 'prepare'" in out
    prepared = fresh_repo / "data" / "prepared"
    assert (prepared / "pairs.parquet").exists() and (fresh_repo / "metrics" / "data.json").exists()
    lock = yaml.safe_load((fresh_repo / "dvc.lock").read_text())
    assert "prepare" in lock["stages"] and "data" in lock["stages"]["prepare"]["params"]["params.yaml"]
    before = digest(prepared)

    out = dvc(fresh_repo, "repro", "prepare")
    assert "Running stage" not in out
    assert "didn't change, skipping" in out
    assert "up to date" in dvc(fresh_repo, "status", "prepare")
    assert digest(prepared) == before

    # A params section prepare does not read leaves it up to date.
    edit_params(fresh_repo, lambda p: p.setdefault("unrelated_section", {}).update(knob=1))
    assert "up to date" in dvc(fresh_repo, "status", "prepare")


def test_data_param_change_reruns_prepare(fresh_repo: Path) -> None:
    dvc(fresh_repo, "repro", "prepare")
    first = pd.read_parquet(fresh_repo / "data" / "prepared" / "pairs.parquet")
    train_patients = yaml.safe_load((fresh_repo / "params.yaml").read_text())["data"]["phantom"]["train_patients"]

    edit_params(fresh_repo, lambda p: p["data"]["phantom"].update(train_patients=train_patients + 10))
    status = dvc(fresh_repo, "status", "prepare")
    assert status.startswith("prepare:") and "changed deps" in status
    assert re.search(r"modified:\s+data\b", status), status  # prepare depends on the whole `data` section
    assert "Running stage 'prepare'" in dvc(fresh_repo, "repro", "--dry", "prepare")

    out = dvc(fresh_repo, "repro", "prepare")
    assert "Running stage 'prepare'" in out
    second = pd.read_parquet(fresh_repo / "data" / "prepared" / "pairs.parquet")
    count = lambda df, split: df.loc[df["split"] == split, "patient_id"].nunique()  # noqa: E731
    assert (count(first, "train"), count(second, "train")) == (train_patients, train_patients + 10)
    # The test split does not move when the train size does.
    test_ids = lambda df: sorted(df.loc[df["split"] == "test", "pair_id"])  # noqa: E731
    assert test_ids(first) == test_ids(second)
    assert "up to date" in dvc(fresh_repo, "status", "prepare")
