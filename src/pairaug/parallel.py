"""Process ranks under `torchrun` / `accelerate launch` (RANK, WORLD_SIZE, LOCAL_RANK), one process by default;
and child processes that die with their parent.

A SIGKILLed stage cannot clean up after itself: its process-pool workers would wait on their task queue
for ever, and a launcher it started would keep running. `die_with_parent` makes the kernel signal a
child when its parent dies (Linux: prctl PR_SET_PDEATHSIG; elsewhere a thread that watches the parent).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Have this process receive `sig` when `parent_pid`, its parent, exits (however it exits).

    Called first thing in the child. If the parent is already gone (it died before the child got here),
    the child exits at once.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:
            os._exit(1)
        return

    def watch() -> None:  # no parent-death signal outside Linux: poll for being re-parented
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os.kill(os.getpid(), sig)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` for `subprocess`: the child gets `sig` when this process dies (SIGTERM lets a
    launcher such as torchrun stop its own workers). Linux only (a watcher thread would not survive the
    child's exec); elsewhere None, the child outlives a killed parent."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    return lambda: die_with_parent(parent, sig)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers are killed when this process dies (they hold no state worth keeping).

    The workers' parent must be this process, so on Linux they are forked (Python 3.14's default there,
    forkserver, would make the fork server their parent); elsewhere the default (spawn) already does.
    """
    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),))
