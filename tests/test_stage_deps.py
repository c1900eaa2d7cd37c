"""Each dvc.yaml stage lists as code deps exactly the files its script imports (tools/stage_deps.py), so
`dvc repro` reruns a stage when a module it runs changes, and only then."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

_spec = importlib.util.spec_from_file_location("stage_deps", REPO / "tools" / "stage_deps.py")
stage_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage_deps)

DVC_TEXT = (REPO / "dvc.yaml").read_text()
TOKENIZER = "src/pairaug/models/tokenizer.py"


def deps_of(dvc_text: str, stage: str) -> list[str]:
    body = yaml.safe_load(dvc_text)["stages"][stage]
    return body.get("do", body)["deps"]


@pytest.fixture(scope="module")
def expected() -> dict[str, list[str]]:
    return stage_deps.expected_deps(REPO, DVC_TEXT)


def test_every_stage_lists_exactly_the_modules_its_script_imports():
    problems = stage_deps.check(DVC_TEXT)
    assert not problems, "run `python tools/stage_deps.py`:\n" + "\n".join(problems)


def test_the_closure_follows_imports_through_packages(expected):
    prune = expected["prune"]
    assert prune[0] == "stages/prune.py"
    # stages/prune.py → pairaug.prune → models.scorer → models.clip → models.tokenizer, with the packages
    assert {TOKENIZER, "src/pairaug/models/clip.py", "src/pairaug/models/__init__.py",
            "src/pairaug/__init__.py"} <= set(prune)
    assert "src/pairaug/models/generator.py" not in prune  # prune never loads the generator
    assert all((REPO / f).is_file() for deps in expected.values() for f in deps)
    # every stage of dvc.yaml runs a script the tool reads (a foreach stage once)
    assert set(expected) == set(yaml.safe_load(DVC_TEXT)["stages"])


def test_a_dep_missing_from_dvc_yaml_fails_naming_the_stage_and_the_module(expected):
    broken = stage_deps.rewrite(DVC_TEXT, {**expected, "prune": [f for f in expected["prune"] if f != TOKENIZER]})
    assert TOKENIZER not in deps_of(broken, "prune") and "review/decisions.csv" in deps_of(broken, "prune")
    assert stage_deps.check(broken) == [
        f"stage prune: stages/prune.py imports {TOKENIZER}, which its deps do not list"]
    assert stage_deps.rewrite(broken, expected) == DVC_TEXT  # the tool puts it back, the rest untouched


def test_a_dep_the_script_never_imports_fails_too(expected):
    extra = "src/pairaug/models/generator.py"
    broken = stage_deps.rewrite(DVC_TEXT, {**expected, "pretrain": [*expected["pretrain"], extra]})
    assert stage_deps.check(broken) == [
        f"stage pretrain: deps list {extra}, which stages/pretrain.py never imports"]
    # a folder stands for every module under it: wider than the imports
    folder = DVC_TEXT.replace("      - src/pairaug/rewrite/run.py\n", "      - src/pairaug/rewrite\n", 1)
    assert "stage rewrite: deps list src/pairaug/rewrite/cli.py, which stages/rewrite.py never imports" in \
        stage_deps.check(folder)


def test_a_new_import_in_a_stage_fails_the_check_until_the_tool_rewrites_dvc_yaml(tmp_path: Path):
    for rel in ("src/pairaug", "stages", "tools"):
        shutil.copytree(REPO / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    script = tmp_path / "stages" / "privacy.py"
    script.write_text(script.read_text().replace("import logging\n", "import logging\n\nimport pairaug.generate.p2p\n", 1))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src")}

    def tool(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "tools/stage_deps.py", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    checked = tool("--check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    # p2p and what it imports that privacy did not already: each named with the stage
    assert "stage privacy: stages/privacy.py imports src/pairaug/generate/p2p.py, which its deps do not list" \
        in checked.stdout.splitlines()
    assert "src/pairaug/generate/__init__.py" in checked.stdout
    assert all(line.startswith("stage privacy: ") for line in checked.stdout.splitlines())
    assert tool().returncode == 0
    assert "src/pairaug/generate/p2p.py" in deps_of((tmp_path / "dvc.yaml").read_text(), "privacy")
    assert tool("--check").returncode == 0


@pytest.mark.parametrize("stage", ["intra-check", "pretrain"])
def test_the_static_closure_is_what_python_loads_when_the_script_starts(stage: str, expected):
    """grimp reads the source; Python's own import of the script loads the same pairaug modules, no fewer
    (nothing reaches a module by a dynamic import the graph cannot see) and, here, no more."""
    script = expected[stage][0]
    code = ("import importlib.util, json, sys\n"
            f"spec = importlib.util.spec_from_file_location('stage_script', {script!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items())"
            " if n.split('.')[0] == 'pairaug')))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    loaded = {Path(f).resolve().relative_to(REPO).as_posix() for f in json.loads(out.splitlines()[-1])}
    assert loaded == set(expected[stage][1:])
