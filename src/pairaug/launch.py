"""Multi-process stages: `launch.processes` > 1 restarts a stage under `torchrun` or `accelerate launch`.

DVC runs every stage as a plain `python stages/<stage>.py ...`. A stage that can scale out calls
`relaunch(cfg)` first: with one process (the default) it returns and the stage runs as usual; with N it
runs the same script under the chosen launcher with N processes and exits with its status. Inside the
launched processes RANK / WORLD_SIZE are set, so the call returns there and the stage runs as one rank
(`pairaug.parallel.Ranks`). Generation shards its chunks by rank; pretraining wraps the model in DDP.
Only rank 0 writes outputs and logs to MLflow.

Devices, one story for every stage that runs a model: the stage calls `configure(launch)` first (or
`relaunch`, which does), `stage_device()` is then where its models and batches go (`launch.device`: auto
= this rank's GPU when torch sees one, else the CPU), the process group joins NCCL only when that device
is a GPU (gloo otherwise), and `autocast()` applies `launch.mixed_precision` on a GPU only (CPU stays
float32, so CPU runs give the same bytes as before). Functions that run a model send their inputs to the
model's device and bring results back to the CPU. The choice travels to launched ranks in the environment.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.distributed as dist

from pairaug.errors import ParamError
from pairaug.parallel import Ranks, child_dies_with_parent
from pairaug.params import Params, Positive

log = logging.getLogger(__name__)


@dataclass
class LaunchConfig(Params):
    launcher: Literal["torchrun", "accelerate"] = "torchrun"  # how processes > 1 are started
    processes: Annotated[int, Positive] = 1  # processes on this machine (GPUs: one per GPU; CPU: gloo, for tests)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: this rank's GPU when torch sees one, else the CPU
    # training and scoring on a GPU (CPU: always float32); YAML 1.1 reads a bare `no` (as `dvc exp run -S`
    # writes it back) as false, which means "no" too
    mixed_precision: Literal["no", "fp16", "bf16", False] = "no"

    def rules(self) -> None:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ParamError("device", "is cuda but torch sees no CUDA device (auto or cpu runs on the CPU)")


DEVICE_ENV, PRECISION_ENV = "PAIRAUG_DEVICE", "PAIRAUG_MIXED_PRECISION"


def configure(cfg: LaunchConfig) -> None:
    """Make `cfg.device` / `cfg.mixed_precision` this process's (and its launched ranks') choice."""
    os.environ[DEVICE_ENV], os.environ[PRECISION_ENV] = cfg.device, cfg.mixed_precision or "no"


def stage_device(ranks: Ranks | None = None) -> torch.device:
    """Where this stage's models and batches go (see the module docstring)."""
    ranks = ranks or Ranks.from_env()
    choice = os.environ.get(DEVICE_ENV, "auto")
    if choice not in ("auto", "cpu", "cuda"):
        raise ParamError("launch.device", f"must be auto, cpu or cuda, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ParamError("launch.device", "is cuda but torch sees no CUDA device")
    return torch.device("cuda", ranks.local_rank)


def generation_dtype(name: str, device: torch.device) -> torch.dtype:
    """A generation stage's `dtype` param: half precision only where a GPU runs it; CPU stays float32."""
    if device.type != "cuda":
        return torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def autocast(device: torch.device):
    """`launch.mixed_precision` for a block of forward passes on a GPU; nothing on the CPU."""
    precision = os.environ.get(PRECISION_ENV, "no")
    if device.type != "cuda" or precision == "no":
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def grad_scaler(device: torch.device) -> torch.amp.GradScaler:
    """fp16 training's loss scaling (a pass-through otherwise)."""
    enabled = device.type == "cuda" and os.environ.get(PRECISION_ENV, "no") == "fp16"
    return torch.amp.GradScaler("cuda" if enabled else "cpu", enabled=enabled)


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
    configure(cfg)
    if cfg.processes == 1 or "WORLD_SIZE" in os.environ:
        return
    cmd = launch_command(cfg, argv if argv is not None else sys.argv)
    log.info("launching %d processes: %s", cfg.processes, " ".join(cmd))
    # A killed stage takes its launcher with it (SIGTERM: the launcher then stops its ranks).
    sys.exit(subprocess.call(cmd, preexec_fn=child_dies_with_parent()))


@contextmanager
def process_group(ranks: Ranks) -> Iterator[Ranks]:
    """Join the launched processes' group for the block (NCCL when the stage's device is a GPU: it carries
    only CUDA tensors; gloo on the CPU, also on a GPU machine with launch.device cpu); no-op for one process."""
    if ranks.world == 1 or dist.is_initialized():
        yield ranks
        return
    device = stage_device(ranks)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
