"""The generation stages as processes: a killed `python stages/generate.py inter` resumes with only the
missing chunks and ends byte-identical to an uninterrupted run; benchmarks/stage_memory.py measures a
stage's process tree (on tiny params)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, TINY_PARAMS, copy_repo, run

pytestmark = pytest.mark.slow


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def repo_with_generation_inputs(dest: Path, tiny_repo: Path) -> Path:
    """A repository copy on tiny params holding what the generation stages read, from the tiny run."""
    repo = copy_repo(dest, TINY_PARAMS)
    for rel in ("data/prepared", "data/rewritten", "models/generator"):
        shutil.copytree(tiny_repo / rel, repo / rel)
    return repo


def test_killed_generation_resumes_with_only_the_missing_chunks(tmp_path, tiny_repo):
    repo = repo_with_generation_inputs(tmp_path / "repo", tiny_repo)
    rewritten = pd.read_parquet(repo / "data/rewritten/inter.parquet")
    total = int((rewritten["status"] == "ok").sum())
    batch = TINY_PARAMS["generate"]["batch_size"]
    n_chunks = math.ceil(total / batch)
    assert n_chunks >= 4, "the tiny run needs several chunks for this test"

    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "stages/generate.py", "inter"], cwd=repo, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 600
            # A chunk counts once its folder holds rows.parquet, which appears with the folder's atomic rename.
            while not list((repo / "data/.work").glob("inter-*/chunk-000000/rows.parquet")):
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "no chunk finished in time"
                time.sleep(0.005)
            proc.kill()  # SIGKILL: no cleanup at all, as in a crash or a preempted node
        finally:
            proc.kill()
            proc.wait()
    (work,) = (repo / "data/.work").glob("inter-*")
    done = sorted(p.parent.name for p in work.glob("chunk-*/rows.parquet"))
    assert 1 <= len(done) < n_chunks, f"killed too late ({len(done)} of {n_chunks} chunks done)"
    assert not (repo / "data/synthetic/inter").exists()  # nothing assembled: no half output for DVC to cache
    reused = sum(len(pd.read_parquet(work / c / "rows.parquet")) for c in done)

    proc = run([sys.executable, "stages/generate.py", "inter"], repo)
    line = re.search(r"inter: generated (\d+) pairs, (\d+) reused", proc.stdout + proc.stderr)
    assert line, proc.stderr
    assert (int(line.group(1)), int(line.group(2))) == (total - reused, reused)
    # The result is the uninterrupted run's (the tiny pipeline's `dvc repro`), byte for byte.
    assert folder_bytes(repo / "data/synthetic/inter") == folder_bytes(tiny_repo / "data/synthetic/inter")
    assert not list((repo / "data/.work").glob("inter-*"))  # the work folder is gone once assembled


def test_stage_memory_measures_a_stage_process_tree(tmp_path, tiny_repo):
    repo = repo_with_generation_inputs(tmp_path / "repo", tiny_repo)
    state = tmp_path / "dvc-state"  # keep DVC's site/global state inside the test's folder
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(state / "site"),
           "DVC_GLOBAL_CONFIG_DIR": str(state / "global"), "DVC_SYSTEM_CONFIG_DIR": str(state / "system")}
    out = tmp_path / "memory.json"
    proc = run([sys.executable, str(REPO / "benchmarks/stage_memory.py"), "--repo", str(repo), "--json", str(out),
                "--logs", str(tmp_path / "logs"), "image-only-generate"], tmp_path, env=env)
    result = json.loads(out.read_text())
    (stage,) = result["stages"]
    assert stage["name"] == "image-only-generate" and stage["returncode"] == 0, proc.stdout
    assert stage["command"] == "dvc repro --single-item --force image-only-generate"
    # The stage's python (a child of dvc's shell) was seen: torch alone takes well over 150 MiB.
    assert "stages/generate.py image_only" in stage["peak_process"]
    assert 150 * 2 ** 20 < stage["peak_process_rss"] <= stage["peak_tree_rss"] < result["budget_bytes"]
    assert stage["samples"] > 10
    assert re.search(r"^image-only-generate\s+0\s+[\d.]+\s+\d+ MiB\s+\d+ MiB\s+ok$", proc.stdout, re.M), proc.stdout
    manifest = pd.read_parquet(repo / "data/synthetic/image_only/manifest.parquet")
    assert len(manifest) == len(folder_bytes(tiny_repo / "data/synthetic/image_only")) - 1  # it really ran

    # A command over the budget (or failing) makes the script exit 1.
    hog = "import time; x = bytearray(b'1' * 2**26); time.sleep(0.5)"  # 64 MiB, touched
    proc = run([sys.executable, str(REPO / "benchmarks/stage_memory.py"), "--repo", str(repo), "--budget-gib", "0.03",
                "--cmd", f'{sys.executable} -c "{hog}"'], tmp_path, check=False)
    assert proc.returncode == 1 and "OVER" in proc.stdout
