"""The layers contract (pyproject.toml, checked by `lint-imports` in CI) holds, and it is not a formality:
a sideways import between pipeline packages, or an upward one, breaks it."""

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


def test_the_library_keeps_its_layers(copy: Path):
    result = lint(copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(("module", "forbidden"), [
    ("train/pretrain.py", "from pairaug.evaluate.run import evaluate_mix"),  # sideways: train → evaluate
    ("generate/inter.py", "from pairaug.train.generator import fit_generator"),  # sideways: generate → train
    ("measurement/zeroshot.py", "from pairaug.evaluate import run"),  # upwards: measurement → evaluate
    ("data/schema.py", "from pairaug.models import clip"),  # upwards: data → models
    ("io.py", "import stages.prepare"),  # the library importing a stage script
])
def test_a_forbidden_import_breaks_the_contract(copy: Path, module: str, forbidden: str):
    path = copy / "src/pairaug" / module
    path.write_text(path.read_text() + f"\n{forbidden}  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    importer = "pairaug." + module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in result.stdout and importer in result.stdout, result.stdout


def test_every_module_of_the_library_sits_in_a_layer(copy: Path):
    (copy / "src/pairaug/newthing.py").write_text('"""A module no layer names."""\n')
    result = lint(copy)
    assert result.returncode != 0 and "newthing" in result.stdout, result.stdout
