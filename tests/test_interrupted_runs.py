"""A killed run: no temp output left for good, no orphaned workers, the earlier output kept."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import run

from pairaug.io import _HOST, atomic_path, remove_leftovers

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` s for `procs` to exit; return those still running (a zombie has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in procs:
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_leftover_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    dead = tmp_path / f".out.{_HOST}-{dead_pid()}-abc123.tmp"
    live = tmp_path / f".out.{_HOST}-{os.getpid()}-def456.tmp"  # a writer still at work
    other_host = tmp_path / f".out.{'0' * 8 if _HOST != '0' * 8 else '1' * 8}-{dead_pid()}-ghi789.tmp"
    for folder in (dead, live, other_host):
        (folder / "out" / "images").mkdir(parents=True)
        (folder / "out" / "images" / "1.png").write_bytes(b"half")
    with atomic_path(tmp_path / "out") as tmp:  # a rerun writing the same output
        tmp.mkdir()
        (tmp / "pairs.parquet").write_bytes(b"new")
    assert not dead.exists(), "the dead run's temp folder was not removed"
    assert live.exists() and other_host.exists()  # not ours to judge
    assert (tmp_path / "out" / "pairs.parquet").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other_host.name])


def test_a_kill_mid_swap_gives_back_the_old_output(tmp_path: Path) -> None:
    """Killed between moving the old output aside and moving the new one in: the old one is restored."""
    leftover = tmp_path / f".prepared.{_HOST}-{dead_pid()}-abc123.tmp"
    (leftover / ".old" / "images").mkdir(parents=True)
    (leftover / ".old" / "pairs.parquet").write_bytes(b"old")
    (leftover / "prepared").mkdir()
    assert remove_leftovers(tmp_path) == [leftover]
    assert (tmp_path / "prepared" / "pairs.parquet").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


@linux_only
def test_a_launched_child_dies_with_its_parent(tmp_path: Path) -> None:
    """What `launch.relaunch` gives torchrun: SIGKILL the stage, the launcher gets SIGTERM."""
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        "from pairaug.parallel import child_dies_with_parent\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
        " preexec_fn=child_dies_with_parent())\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    child = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert gone([child], 10) == [], "the child outlived its killed parent"


@linux_only
def test_sigkill_during_prepare_leaves_no_litter_and_no_orphans(fresh_repo: Path) -> None:
    stage = [sys.executable, "stages/prepare.py"]
    run(stage, fresh_repo)  # a good run (tiny phantom) first
    before, prepared = tree_digest(fresh_repo / "data"), tree_digest(fresh_repo / "data" / "prepared")
    params_file = fresh_repo / "params.yaml"
    tiny = params_file.read_text()
    params = yaml.safe_load(tiny)
    params["data"]["phantom"]["train_patients"] = 4000  # long enough to be killed in the middle
    params["data"]["workers"] = 2
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(stage, cwd=fresh_repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, workers = time.monotonic() + 180, []
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            temps = list((fresh_repo / "data").glob(".prepared.*.tmp"))
            images = [p for t in temps for p in (t / "prepared" / "images").glob("*")]
            workers = psutil.Process(proc.pid).children(recursive=True)
            if images and len(workers) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) >= 2, "prepare ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone(workers, 10) == [], "pool workers outlived the killed stage"
    assert list((fresh_repo / "data").glob(".prepared.*.tmp")), "expected the killed run's temp folder"
    assert tree_digest(fresh_repo / "data" / "prepared") == prepared, "the earlier output changed"

    params_file.write_text(tiny)
    run(stage, fresh_repo)  # the rerun clears the dead run's temp folder
    assert tree_digest(fresh_repo / "data") == before, "leftover not removed, or the rerun's output differs"
    assert sorted(p.name for p in (fresh_repo / "data").iterdir()) == [".gitkeep", "prepared"]
