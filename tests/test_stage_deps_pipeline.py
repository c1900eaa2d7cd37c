"""DVC's promise on a finished workspace: a change to a shared module makes stale exactly the stages whose
scripts import it — every one of them, and nothing else."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run

_spec = importlib.util.spec_from_file_location("stage_deps", REPO / "tools" / "stage_deps.py")
stage_deps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stage_deps)

pytestmark = pytest.mark.slow


def stale(repo: Path) -> dict[str, list[str]]:
    """{stage: its changed deps} from `dvc status`."""
    out = json.loads(run(["dvc", "status", "--json"], repo).stdout or "{}")
    return {stage: sorted(p for entry in changes if isinstance(entry, dict) for p in entry.get("changed deps", {}))
            for stage, changes in out.items()}


def importers(module: str, repo: Path) -> set[str]:
    """The stages (foreach items by name) whose scripts import `module`, by the import graph."""
    mixes = yaml.safe_load((repo / "params.yaml").read_text())["pretrain"]["mixes"]
    foreach = {name for name, body in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].items()
               if "foreach" in body}
    stages = {name for name, deps in stage_deps.expected_deps(REPO).items() if module in deps}
    return {f"{s}@{m}" for s in stages & foreach for m in mixes} | (stages - foreach)


@pytest.mark.parametrize("module", ["src/pairaug/models/tokenizer.py", "src/pairaug/data/images.py",
                                    "src/pairaug/models/scorer.py", "src/pairaug/generate/p2p.py"])
def test_touching_a_module_makes_stale_exactly_the_stages_that_import_it(tiny_repo: Path, module: str):
    assert stale(tiny_repo) == {}, "the finished workspace is not up to date to begin with"
    path = tiny_repo / module
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n# a change a user makes\n")
        changed = stale(tiny_repo)
    finally:
        path.write_bytes(original)  # the workspace is shared by the session's other tests
    expected = importers(module, tiny_repo)
    assert set(changed) == expected, (f"stale but not importing: {sorted(set(changed) - expected)}; "
                                      f"importing but not stale: {sorted(expected - set(changed))}")
    assert all(deps == [module] for deps in changed.values()), changed
    if module.endswith("tokenizer.py"):  # the stages that tokenize text through it, and the ones that do not
        assert {"fit-generator", "inter-generate", "prune", "privacy", "evaluate@none"} <= set(changed)
        assert not {"prepare", "prepare-pool", "rewrite"} & set(changed)
    assert stale(tiny_repo) == {}
