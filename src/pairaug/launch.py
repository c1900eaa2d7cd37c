"""Multi-process stages: `launch.processes` > 1 restarts a stage under `torchrun` or `accelerate launch`.

DVC runs every stage as a plain `python stages/<stage>.py ...`. A stage that can scale out calls
`relaunch(cfg)` first: with one process (the default) it returns and the stage runs as usual; with N it
runs the same script under the chosen launcher with N processes and exits with its status. Inside the
launched processes RANK / WORLD_SIZE are set, so the call returns there and the stage runs as one rank
(`pairaug.parallel.Ranks`). Generation shards its chunks by rank; pretraining wraps the model in DDP.
Only rank 0 writes outputs and logs to MLflow.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist

from pairaug.errors import ParamError
from pairaug.parallel import Ranks, child_dies_with_parent

log = logging.getLogger(__name__)


@dataclass
class LaunchConfig:
    launcher: Literal["torchrun", "accelerate"] = "torchrun"  # how processes > 1 are started
    processes: int = 1  # processes on this machine (GPUs: one per GPU; CPU: gloo, for tests)

    def validate(self, prefix: str) -> None:
        if self.processes < 1:
            raise ParamError(f"{prefix}.processes", f"must be ≥ 1, got {self.processes}")


def launch_command(cfg: LaunchConfig, argv: list[str]) -> list[str]:
    """The command that runs `python <argv...>` as `cfg.processes` ranks on this machine."""
    if cfg.launcher == "torchrun":
        exe = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
        if exe is None:
            raise ParamError("launch.launcher", "torchrun not found (it comes with torch)")
        return [exe, "--standalone", f"--nproc-per-node={cfg.processes}", *argv]
    exe = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or shutil.which("accelerate")
    if exe is None:
        raise ParamError("launch.launcher", "accelerate not found: pip install accelerate")
    # `--multi_gpu` is accelerate's torch.distributed launcher; it starts CPU ranks too (gloo, chosen in
    # process_group), where `--cpu` would need MPI. Precision is the stages' own param (`dtype`).
    return [exe, "launch", "--multi_gpu", f"--num_processes={cfg.processes}", "--num_machines=1",
            "--mixed_precision=no", "--dynamo_backend=no", *argv]


def relaunch(cfg: LaunchConfig, argv: list[str] | None = None) -> None:
    """Return at once when one process is asked for or this already is a launched rank; else run the
    stage script under the launcher with `cfg.processes` ranks and exit with its return code."""
    if cfg.processes == 1 or "WORLD_SIZE" in os.environ:
        return
    cmd = launch_command(cfg, argv if argv is not None else sys.argv)
    log.info("launching %d processes: %s", cfg.processes, " ".join(cmd))
    # A killed stage takes its launcher with it (SIGTERM: the launcher then stops its ranks).
    sys.exit(subprocess.call(cmd, preexec_fn=child_dies_with_parent()))


@contextmanager
def process_group(ranks: Ranks) -> Iterator[Ranks]:
    """Join the launched processes' group (NCCL on GPU, gloo on CPU) for the block; no-op for one process."""
    if ranks.world == 1 or dist.is_initialized():
        yield ranks
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
