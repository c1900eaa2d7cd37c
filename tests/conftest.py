"""Shared fixtures: a temporary copy of the repository with tiny params, and the real-CXR samples.

Two tiers: plain `pytest` runs the fast tier (pyproject's addopts deselect `slow`); `pytest -m slow` runs the
end-to-end tier, the tests that build or read the tiny pipeline. A test that asks for `tiny_repo`, or that
runs a repository copy into pretraining, without the `slow` marker is an error, so a new test is fast by
default and cannot slip the pipeline into the fast tier."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REAL_CXR = Path(__file__).resolve().parent / "fixtures" / "real-cxr"  # copy of ../shared/real-cxr (see its README)

class Exactly(dict):
    """A mapping that `deep_merge` puts in place of the base's instead of merging into it."""


# Params small enough for the whole pipeline to run in CI in a few minutes; deep-merged over params.yaml.
TINY_PARAMS: dict = {
    "data": {"phantom": {"train_patients": 40, "valid_patients": 12, "test_patients": 30}},
    "pool": {"phantom": {"train_patients": 60, "valid_patients": 12}},
    # Models: a few steps each (the pipeline's plumbing, not the models' quality, is under test);
    # generate in chunks of 8 so resume and sharding have several chunks to work with.
    "scorer": {"train": {"steps": 20, "select_every": 10}},
    "generator": {"arch": {"block_out_channels": [8, 16, 32]}, "train": {"steps": 20, "batch_size": 16},
                  "check": {"reports": 24, "steps": 3}},
    "generate": {"steps": 4, "batch_size": 8},
    "rewrite": {"valid_reports": 8},
    "intra": {"steps": 4, "batch_size": 8, "candidates": 2, "check": {"psnr_pairs": 8, "reference_pairs": 16},
              "sweep": {"guidance": [3.5], "eta": [0.2, 0.5], "self_eta": [0.2]}},
    # The 20-step scorer's matched-pair cosines sit near 0.1: τ = 0 still prunes, but keeps pairs in every
    # branch so each augmentation mix has synthetic pairs to train on (τ = 0.3 keeps ~5%, no paraphrase).
    "prune": {"inter_tau": 0.0, "intra_min_change_read": None},  # the 4-step tiny editor draws no readable change
    # A 20-step generator draws no finding: the gate's change_read bound is tested on phantom films
    # (tests/test_intra_gate.py), not here.
    "validate": {"min_change_read": 0.0},
    # Five of the eight mixes: both controls, the real-only baseline, a single branch and the full method
    # (each mix is two stages; the others train the same code on other manifests).
    "replicates": [0],
    # The budget rule at tiny counts: a pass over each mix's pairs, 6 steps at least, 9 at most.
    "pretrain": {"arch": {"vision_layers": 1, "text_layers": 1},
                 "train": {"epochs": 1, "min_steps": 6, "max_steps": 9, "batch_size": 32, "select_every": 3},
                 "mixes": Exactly({"none": [], "real_dup": ["real_dup"], "intra": ["intra"],
                                   "pairaug": ["inter", "intra"], "pool_real": ["pool_real"]})},
    "evaluate": {"probe_draws": 1},
    "report": {"tsne_per_set": 20, "gallery_pairs": 4},
}


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Exactly):
            out[k] = dict(v)
        else:
            out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# Stages a fast test never reaches: a copy whose dvc.lock records one of them ran the tiny pipeline.
PIPELINE_STAGES = ("pretrain@", "evaluate@", "report")
_copies: list[Path] = []  # the repository copies made during the current test


def pytest_collection_modifyitems(config, items) -> None:
    """Refuse a test that uses the tiny pipeline without the `slow` marker (it would land in the fast tier)."""
    unmarked = [item.nodeid for item in items
                if "tiny_repo" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError("tests that use tiny_repo (the whole tiny pipeline) must be marked "
                                "@pytest.mark.slow: " + ", ".join(unmarked))


@pytest.fixture(autouse=True)
def _pipeline_needs_the_slow_marker(request) -> Iterator[None]:
    """After a test without `slow`: fail it if a repository copy it made ran the pipeline into pretraining."""
    _copies.clear()
    yield
    if request.node.get_closest_marker("slow") is not None:
        return
    for repo in _copies:
        lock = repo / "dvc.lock"
        ran = yaml.safe_load(lock.read_text()).get("stages", {}) if lock.exists() else {}
        reached = sorted(s for s in ran if s.startswith(PIPELINE_STAGES))
        if reached:
            pytest.fail(f"{request.node.nodeid} ran the tiny pipeline ({', '.join(reached)} in {lock}) "
                        "without @pytest.mark.slow: mark it, or run only the stages it tests", pytrace=False)


def repo_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files: what a clone (plus the current change) holds."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and (REPO / f).is_file()]


def copy_repo(dest: Path, params_override: dict | None = None) -> Path:
    """Copy the repository's files into `dest`, make it a git repo, and overlay params."""
    for rel in repo_files():
        if rel.startswith(("data/", "models/", "metrics/")) and rel != "data/.gitkeep":
            continue  # outputs: the copy must build them itself
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    (dest / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params = deep_merge(params, params_override or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git = ["git", "-c", "user.email=test@pairaug", "-c", "user.name=test"]
    subprocess.run([*git, "init", "-q"], cwd=dest, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dest, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dest, check=True)
    _copies.append(dest)
    return dest


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None, timeout: int = 1800):
    """Run a command with the test interpreter's environment; return the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", **(env or {})}
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")
    full_env.pop("DVC_ROOT", None)
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the copy's own mlflow.db, never a team server
        if key not in (env or {}):
            full_env.pop(key, None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A repository copy on tiny params on which `dvc repro` has run the whole pipeline once."""
    dest = copy_repo(tmp_path_factory.mktemp("repo"), TINY_PARAMS)
    run(["dvc", "repro"], dest)
    return dest


@pytest.fixture
def fresh_repo(tmp_path) -> Path:
    """A repository copy on tiny params with nothing run yet."""
    return copy_repo(tmp_path / "repo", TINY_PARAMS)


@pytest.fixture(scope="session")
def real_cxr() -> Path:
    if not (REAL_CXR / "manifest.csv").exists():
        pytest.skip(f"real chest X-ray samples not found at {REAL_CXR}")
    return REAL_CXR


@contextlib.contextmanager
def pairaug_ui(repo: Path, log_path: Path, wait: float = 300) -> Iterator[tuple[str, str]]:
    """`pairaug ui` on `repo`'s local store and a free port: yields (server base URL, the link it printed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_ROOT")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    log = open(log_path, "w+")  # noqa: SIM115 - the server writes to it until the end
    proc = subprocess.Popen([sys.executable, "-m", "pairaug.cli", "ui", "--port", str(port), "--wait", str(wait)],
                            cwd=repo, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        deadline, url = time.monotonic() + wait + 20, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            log.seek(0)
            url = next(iter(re.findall(r"^http://\S+$", log.read(), re.M)), None)  # the link, on a line of its own
        log.seek(0)
        assert url, f"pairaug ui printed no link:\n{log.read()[-3000:]}"
        yield f"http://127.0.0.1:{port}", url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # pairaug ui stops its mlflow server
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
