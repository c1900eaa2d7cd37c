"""Shared data: `dvc push` to a local remote, a fresh `git clone`, `dvc pull` → nothing left to reproduce."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, run

GIT = ["git", "-c", "user.email=test@pairaug", "-c", "user.name=test"]


def test_default_remote_is_a_local_folder():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    name = config["core"]["remote"]
    url = config[f"'remote \"{name}\"'"]["url"]
    assert "://" not in url and not Path(url).is_absolute()  # a folder, relative to .dvc/: no setup needed


@pytest.mark.slow
def test_push_clone_pull_leaves_nothing_to_reproduce(tiny_repo, tmp_path):
    origin = Path(shutil.copytree(tiny_repo, tmp_path / "origin", symlinks=True))
    remote = tmp_path / "remote"
    # --local: this machine's override of the committed default remote, so the test writes only under tmp.
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], origin)
    run([*GIT, "add", "-A"], origin)
    run([*GIT, "commit", "-qm", "pipeline outputs"], origin)
    pushed = run(["dvc", "push"], origin)
    assert "pushed" in pushed.stdout.lower()

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "data" / "prepared").exists() and not (clone / "models").exists()
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], clone)

    run(["dvc", "pull", "prepare"], clone)  # one stage's outputs only
    assert (clone / "data" / "prepared" / "pairs.parquet").exists()
    assert not (clone / "data" / "rewritten").exists() and not (clone / "models").exists()

    run(["dvc", "pull"], clone)
    for out in ("data/validated/pairs.parquet", "data/synthetic/intra/manifest.parquet", "models/scorer",
                "models/generator", "models/vlp/pairaug/seed-0/model.safetensors"):
        assert (clone / out).exists(), out
    status = run(["dvc", "status", "--json"], clone)
    assert json.loads(status.stdout) == {}
    dry = run(["dvc", "repro", "--dry"], clone)
    assert "Running stage" not in dry.stdout
