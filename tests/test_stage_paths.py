"""One owner for the workspace's paths: pairaug.layout names them, stage scripts pass them to the library,
and every path a stage script names is among its dvc.yaml deps or outs (so DVC knows what it reads and
writes). No other library module spells a workspace path, as a default or otherwise."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import yaml
from conftest import REPO

from pairaug import layout

WORKSPACE_PATH = re.compile(r"^(data|models|metrics|review|gx)/[\w.{}/-]+$")
# Named by a stage script without being a dep or an out, on purpose
NOT_TRACKED = {layout.GENERATION_WORK: "chunks in progress of the resumable stages, removed when they finish",
               layout.GX_ROOT: "the folder holding gx/, whose files validate lists one by one"}
NOT_READ = {("image-only-generate", layout.REWRITTEN): "image_only draws from the real reports: generate_fresh never "
                                                       "opens rewritten_dir for it"}


def _path_literal(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and WORKSPACE_PATH.match(node.value):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        return text if WORKSPACE_PATH.match(text) else None
    return None


def script_paths(script: Path, arg: str | None) -> dict[str, int]:
    """{path: line} for each workspace path the script names: `layout.X`, `layout.f(...)` (an argument that
    is not a literal is the stage's cmd argument, `${key}` for a foreach stage, else `*`), or a literal."""
    tree = ast.parse(script.read_text())
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    out: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "layout":
            value = getattr(layout, node.attr)
            if callable(value):
                assert id(node) in calls, f"{script}:{node.lineno}: layout.{node.attr} passed uncalled"
                continue
            out[value] = node.lineno
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "layout":
            args = [a.value if isinstance(a, ast.Constant) else (arg or "*") for a in node.args]
            out[getattr(layout, node.func.attr)(*args)] = node.lineno
        elif (literal := _path_literal(node)) is not None:
            out[literal] = node.lineno
    return out


def _entries(items: list | None) -> list[str]:
    return [i if isinstance(i, str) else next(iter(i)) for i in items or []]


def undeclared(dvc_text: str, root: Path = REPO) -> list[str]:
    """One line per path a stage script names that its dvc.yaml entry neither depends on nor outputs."""
    problems = []
    for name, stage in yaml.safe_load(dvc_text)["stages"].items():
        body = stage.get("do", stage)
        words = shlex.split(body["cmd"])
        script = next(w for w in words if w.startswith("stages/"))
        rest = words[words.index(script) + 1:]
        declared = [*_entries(body.get("deps")), *(p for key in ("outs", "metrics", "plots")
                                                   for p in _entries(body.get(key)))]
        for path, line in script_paths(root / script, rest[0] if rest else None).items():
            if path in NOT_TRACKED or (name, path) in NOT_READ:
                continue
            ok = any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)
            # a folder the library reads parts of by name (data/synthetic/<branch>/…): each part is listed
            ok = ok or any(d.startswith(path.rstrip("/") + "/") for d in declared)
            if not ok:
                problems.append(f"stage {name}: {script}:{line} names {path}, which is not among its deps or outs")
    return problems


def test_every_path_a_stage_script_names_is_a_dep_or_an_out_of_its_stage():
    problems = undeclared((REPO / "dvc.yaml").read_text())
    assert not problems, "\n".join(problems)


def test_the_check_reads_each_stage_script_and_fails_on_an_undeclared_path():
    text = (REPO / "dvc.yaml").read_text()
    evaluate = script_paths(REPO / "stages/evaluate.py", "${key}")
    assert {"models/vlp/${key}", "data/prepared/pairs.parquet", "data/eval/${key}/scores.parquet"} <= set(evaluate)
    assert "data/synthetic/inter" in script_paths(REPO / "stages/generate.py", "inter")
    start = text.index("\n  prune:\n")
    broken = text[:start] + text[start:].replace("      - models/scorer\n", "", 1)
    line = script_paths(REPO / "stages/prune.py", None)["models/scorer"]
    assert undeclared(broken) == [f"stage prune: stages/prune.py:{line} names models/scorer, which is not among its "
                                  "deps or outs"]


def test_no_library_module_spells_a_workspace_path():
    found = []
    for file in sorted((REPO / "src/pairaug").rglob("*.py")):
        if file.name == "layout.py":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if (literal := _path_literal(node)) is not None:
                found.append(f"{file.relative_to(REPO)}:{node.lineno}: {literal}")
    assert not found, "name these in pairaug/layout.py and pass them from the stage script:\n" + "\n".join(found)
