"""DVC experiments the report commands compare: run one in a temporary copy, read its committed metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pairaug.errors import InputError, PairaugError


def run_temp_experiment(root: Path, name: str, params: list[str], what: str) -> None:
    """`dvc exp run --temp -n <name> -S <param>...`: the pipeline in a temporary copy of the workspace, the
    stages its params leave alone restored from DVC's run cache; `what` names it in an error."""
    cmd = ["dvc", "exp", "run", "--temp", "-n", name, *[a for p in params for a in ("-S", p)]]
    # This interpreter's DVC, and its bin first on PATH so the stages' `python` is this environment's too
    # (as an activated venv would have it; `pairaug` may be called by its path without activating).
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    done = subprocess.run([sys.executable, "-m", *cmd], cwd=root, env=env)
    if done.returncode != 0:  # DVC has printed why; name the experiment and the command, no traceback
        raise PairaugError(f"{what}: the experiment failed (exit {done.returncode}): {' '.join(cmd)}")


def read_experiment_json(root: Path, name: str, rel: str, hint: str) -> dict:
    """A committed (cache: false) metrics file of the DVC experiment `name`, read from its git ref."""
    # Oldest first, so a name run again on a newer commit reads its newest run.
    refs = subprocess.run(["git", "for-each-ref", "--sort=creatordate", "--format=%(refname)", "refs/exps"],
                          cwd=root, check=True,
                          capture_output=True, text=True).stdout.split()
    matches = [r for r in refs if r.rsplit("/", 1)[-1] == name]
    if not matches:
        raise InputError(f"no DVC experiment named {name!r} ({hint})", file=root)
    shown = subprocess.run(["git", "show", f"{matches[-1]}:{rel}"], cwd=root, capture_output=True, text=True)
    if shown.returncode != 0:
        raise InputError(f"experiment {name!r} has no {rel}", file=root)
    return json.loads(shown.stdout)
