"""The layers contract (pyproject.toml, checked by `lint-imports` in CI) is exhaustive: a new module of the
library must be placed in a layer, or the check fails. (That the current code keeps the contract is
`lint-imports` itself, run by .ci/run.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for rel in ("src/pairaug", "stages"):
        shutil.copytree(REPO / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_every_module_of_the_library_sits_in_a_layer(copy: Path):
    (copy / "src/pairaug/newthing.py").write_text('"""A module no layer names."""\n')
    result = lint(copy)
    assert result.returncode != 0 and "newthing" in result.stdout, result.stdout
