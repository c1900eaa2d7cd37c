"""Each dvc.yaml stage's code deps, from its stage script's import graph.

A stage's code deps are its script plus every file Python runs when the script starts: the `pairaug` (and
`stages`) modules it imports, transitively, and the `__init__.py` of each package on the way. The graph
is static (grimp, the one import-linter checks the layers with; imports under `if TYPE_CHECKING:` never
run and are left out), so a lazy import inside a function counts as well.

    python tools/stage_deps.py           # rewrite dvc.yaml's code deps (run it whenever imports change)
    python tools/stage_deps.py --check   # list what differs, exit 1 if anything does

The rewrite replaces only the code-dep lines of each `deps:` list (paths under stages/ and src/): the
script first, then the modules in order; data and model deps and the comments between them stay as they
are. tests/test_stage_deps.py runs the check.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pairaug", "stages")
CODE_PREFIXES = ("stages/", "src/")
_SCRIPT = re.compile(r"python\s+(stages/\S+\.py)")


def stage_scripts(dvc: dict) -> dict[str, str]:
    """{stage name: its script} for every stage whose cmd runs `python stages/<x>.py` (a foreach stage once,
    by its name: its items share one deps list)."""
    out = {}
    for name, stage in (dvc.get("stages") or {}).items():
        body = stage.get("do", stage)
        cmds = body.get("cmd", "")
        match = _SCRIPT.search(" ".join(cmds) if isinstance(cmds, list) else cmds)
        if match:
            out[name] = match.group(1)
    return out


def _module_file(module: str, root: Path) -> str:
    base = root / "src" if module.split(".")[0] == "pairaug" else root
    path = base.joinpath(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return file.relative_to(root).as_posix()


def import_graph(root: Path = REPO):
    """grimp's graph of `pairaug` (from root/src) and `stages` (from root)."""
    import grimp

    for entry in (str(root), str(root / "src")):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for package in PACKAGES:  # grimp finds packages through importlib: make sure it finds root's copies
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or not origin.is_relative_to(root.resolve()):
            raise SystemExit(f"error: {package} imports from {origin}, not from {root}")
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True, cache_dir=None)


def closure(script: str, graph, root: Path = REPO) -> list[str]:
    """The files Python runs when `script` starts: its imports (transitive) and their packages' __init__s."""
    start = script.removesuffix(".py").replace("/", ".")
    seen: set[str] = set()
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += graph.find_modules_directly_imported_by(module)
        if module != start:  # the script runs as __main__, outside its package
            parts = module.split(".")
            todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # the packages' __init__s run first
    seen.discard(start)
    return [script, *sorted(_module_file(m, root) for m in seen)]


def expected_deps(root: Path = REPO, dvc_text: str | None = None) -> dict[str, list[str]]:
    """{stage: its code deps} computed from the import graph."""
    dvc = yaml.safe_load(dvc_text if dvc_text is not None else (root / "dvc.yaml").read_text())
    graph = import_graph(root)
    return {name: closure(script, graph, root) for name, script in stage_scripts(dvc).items()}


def _listed_code(dep: str, root: Path) -> list[str]:
    """The code files a code dep stands for (a folder: the .py files under it)."""
    path = root / dep
    if path.is_dir():
        return sorted(p.relative_to(root).as_posix() for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return [dep]


def check(dvc_text: str, root: Path = REPO) -> list[str]:
    """One line per difference between the code deps dvc.yaml lists and those the imports give."""
    dvc = yaml.safe_load(dvc_text)
    expected = expected_deps(root, dvc_text)
    problems = []
    for name, want in expected.items():
        body = dvc["stages"][name].get("do", dvc["stages"][name])
        deps = [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps") or []]
        listed = {f for d in deps if d.startswith(CODE_PREFIXES) for f in _listed_code(d, root)}
        for missing in sorted(set(want) - listed):
            problems.append(f"stage {name}: {want[0]} imports {missing}, which its deps do not list")
        for extra in sorted(listed - set(want)):
            problems.append(f"stage {name}: deps list {extra}, which {want[0]} never imports")
    return problems


def _item(line: str) -> str | None:
    """The path of a `- path  # comment` list item, None for a comment line."""
    text = line.strip()
    return text[2:].split(" #")[0].strip() if text.startswith("- ") else None


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rewrite(dvc_text: str, expected: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's code deps replaced by `expected[stage]`; everything else kept."""
    lines = dvc_text.splitlines(keepends=True)
    out: list[str] = []
    stage = None
    i = 0
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^  ([\w@.-]+):\s*$", line)  # a stage under `stages:`
        if top:
            stage = top.group(1)
        if stage in expected and re.match(r"^\s+deps:\s*$", line):
            out.append(line)
            block = []
            i += 1
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > _indent(line):
                block.append(lines[i])
                i += 1
            items = [b for b in block if _item(b) is not None]
            indent = " " * (_indent(items[0]) if items else _indent(line) + 2)
            kept = {_item(b): b for b in block if (_item(b) or "").startswith(CODE_PREFIXES)}  # keeps comments
            out += [kept.get(p, f"{indent}- {p}\n") for p in expected[stage]]
            out += [b for b in block if not (_item(b) or "").startswith(CODE_PREFIXES)]
            continue
        out.append(line)
        i += 1
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list the differences, change nothing")
    args = parser.parse_args(argv)
    path = REPO / "dvc.yaml"
    text = path.read_text()
    if args.check:
        problems = check(text)
        print("\n".join(problems) or "dvc.yaml: every stage's code deps are its imports")
        return 1 if problems else 0
    new = rewrite(text, expected_deps(REPO, text))
    if new != text:
        path.write_text(new)
    problems = check(new)
    if problems:  # the rewrite missed a stage (a deps list it could not find)
        print("\n".join(problems), file=sys.stderr)
        return 1
    print("dvc.yaml: code deps " + ("rewritten" if new != text else "already up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
