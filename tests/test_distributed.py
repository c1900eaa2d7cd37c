"""Scale-out: stages under `torchrun` with 2 CPU processes (gloo) give what one process gives."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import run

from pairaug.errors import ParamError
from pairaug.launch import LaunchConfig, launch_command
from pairaug.params import section

WORKER = Path(__file__).resolve().parent / "ddp_train_worker.py"


def torchrun(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc-per-node=2", *args]


def test_ddp_steps_equal_single_process_steps_on_the_global_batch(tmp_path):
    run([sys.executable, str(WORKER), str(tmp_path / "single.pt")], tmp_path)
    run(torchrun(str(WORKER), str(tmp_path / "ddp.pt")), tmp_path)
    single, ddp = torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt")
    assert single.keys() == ddp.keys()
    for name in single:
        if name.endswith("k_proj.bias"):
            # Its true gradient is zero (softmax ignores a shift shared by all keys): Adam turns the
            # float noise of either run into steps, so it says nothing about DDP.
            continue
        torch.testing.assert_close(ddp[name], single[name], rtol=0, atol=1e-6, msg=name)


def workspace_copy(tiny_repo: Path, dest: Path, processes: int, launcher: str = "torchrun") -> Path:
    """A copy of the tiny workspace with `launch` set (the original stays untouched)."""
    shutil.copytree(tiny_repo, dest, symlinks=True)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["launch"] = {**params["launch"], "launcher": launcher, "processes": processes}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def image_digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
@pytest.mark.parametrize("stage,branch", [(["stages/generate.py", "inter"], "inter"),
                                          (["stages/intra_generate.py"], "intra")])
def test_two_process_generation_equals_one_process_byte_for_byte(tiny_repo, tmp_path, stage, branch):
    # torchrun gives each rank one CPU thread; the one-process run gets one too, since on CPU the thread
    # count can move a float's last bit (and then a pixel), whatever the sharding.
    one_thread = {"OMP_NUM_THREADS": "1"}
    single = workspace_copy(tiny_repo, tmp_path / "single", processes=1)
    shutil.rmtree(single / "data" / "synthetic" / branch)
    run([sys.executable, *stage], single, env=one_thread)
    repo = workspace_copy(tiny_repo, tmp_path / "repo", processes=2)
    shutil.rmtree(repo / "data" / "synthetic" / branch)
    proc = run([sys.executable, *stage], repo, env=one_thread)
    assert "launching 2 processes" in proc.stderr  # the stage restarted itself under torchrun
    one, two = single / "data" / "synthetic" / branch, repo / "data" / "synthetic" / branch
    pd.testing.assert_frame_equal(pd.read_parquet(two / "manifest.parquet"), pd.read_parquet(one / "manifest.parquet"))
    digests = image_digests(two)
    assert len(digests) >= 2 * 8 and digests == image_digests(one)  # several chunks, on both ranks
    assert not (repo / "data" / ".work").exists() or not any((repo / "data" / ".work").iterdir())


@pytest.mark.slow
def test_ddp_pretrain_stage_writes_and_logs_once(tiny_repo, tmp_path):
    # Through `accelerate launch` this time (the generation tests use torchrun).
    repo = workspace_copy(tiny_repo, tmp_path / "repo", processes=2, launcher="accelerate")
    runs_before = mlflow_runs(repo, "none")
    proc = run([sys.executable, "stages/pretrain.py", "none"], repo)
    assert "launching 2 processes" in proc.stderr
    assert (repo / "models" / "vlp" / "none" / "seed-0" / "model.safetensors").exists()
    seeds = yaml.safe_load((repo / "params.yaml").read_text())["replicates"]
    assert mlflow_runs(repo, "none") == runs_before + len(seeds)  # one run per replicate: rank 0 alone logged


def mlflow_runs(repo: Path, mix: str) -> int:
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute("SELECT COUNT(*) FROM tags WHERE key = 'mix' AND value = ?", (mix,)).fetchone()[0]


def test_launch_commands_and_params():
    cmd = launch_command(LaunchConfig("torchrun", 4), ["stages/pretrain.py", "none"])
    assert cmd[1:] == ["--standalone", "--nproc-per-node=4", "stages/pretrain.py", "none"]
    cmd = launch_command(LaunchConfig("accelerate", 2), ["stages/generate.py", "inter"])
    assert cmd[1] == "launch" and "--num_processes=2" in cmd and cmd[-2:] == ["stages/generate.py", "inter"]
    with pytest.raises(ParamError, match="launch.processes"):
        section(LaunchConfig, {"launch": {"processes": 0}}, "launch")
    with pytest.raises(ParamError, match="launch.launcher"):
        section(LaunchConfig, {"launch": {"launcher": "mpirun"}}, "launch")
