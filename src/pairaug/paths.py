"""Where the repository is, whether a stage runs in it or under `dvc exp run` in a temp copy."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root: DVC_ROOT under `dvc exp run`, else the nearest folder holding dvc.yaml."""
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here
