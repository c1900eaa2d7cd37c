"""Every command the README and the docs pages (docs/*.md) give does what it says: each pytest command
collects tests, the cheap commands run, and each documented script answers --help."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, run

# The documents a user reads commands from: the README and every page of the docs site.
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
# Cheap enough to run as written (offline, seconds, nothing written).
CHEAP = [
    "pairaug --help",
    'pairaug label "No pleural effusion."',
    'pairaug rewrite --task intra "FINDINGS: Small left pleural effusion. Heart size is normal. IMPRESSION: Left effusion."',
]


def documented_commands() -> list[str]:
    """The commands in the documents' ```bash blocks: one per line or `&&` part, comments dropped."""
    commands = []
    text = "\n".join(doc.read_text() for doc in DOCUMENTS)
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&")]
    return commands


PYTEST_COMMANDS = list(dict.fromkeys(c for c in documented_commands() if c.split()[0] == "pytest"))
SCRIPT_COMMANDS = list(dict.fromkeys(c for c in documented_commands() if re.match(r"python benchmarks/\S+\.py", c)))


def test_the_docs_document_commands() -> None:
    assert len(DOCUMENTS) > 1, "no docs pages found under docs/"
    assert len(PYTEST_COMMANDS) >= 3 and len(SCRIPT_COMMANDS) >= 3, (PYTEST_COMMANDS, SCRIPT_COMMANDS)
    commands = documented_commands()
    for cmd in CHEAP:
        assert cmd in commands, f"no longer documented: {cmd}"


@pytest.mark.parametrize("command", PYTEST_COMMANDS)
def test_documented_pytest_command_collects_tests(command: str) -> None:
    proc = run([sys.executable, "-m", *shlex.split(command), "--collect-only", "-q"], REPO, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    found = re.search(r"(\d+)(?:/\d+)? tests? collected", proc.stdout)
    assert found and int(found.group(1)) > 0, f"{command!r} collects nothing:\n{proc.stdout[-2000:]}"
    if command.split()[1:2] == ["benchmarks"]:  # "the per-stage benchmarks": every benchmark file but the pipeline's
        collected = {line.split("::")[0] for line in proc.stdout.splitlines() if "::" in line}
        per_stage = {f"benchmarks/{p.name}" for p in (REPO / "benchmarks").glob("bench_*.py")
                     if "def test_" in p.read_text() and p.name != "bench_pipeline.py"}
        assert per_stage and per_stage <= collected, per_stage - collected


@pytest.mark.parametrize("command", CHEAP)
def test_cheap_documented_command_runs(command: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")  # the CLI reads params.yaml where it runs
    proc = run(shlex.split(command), tmp_path, check=False, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"], "the command wrote files"


@pytest.mark.parametrize("script", sorted({shlex.split(c)[1] for c in SCRIPT_COMMANDS}))
def test_documented_script_exists_and_answers_help(script: str) -> None:
    proc = run([sys.executable, script, "--help"], REPO, check=False, timeout=300)
    assert proc.returncode == 0 and "usage" in proc.stdout.lower(), proc.stdout + proc.stderr


def test_every_file_the_readme_links_exists() -> None:
    # The docs pages' links are checked by `mkdocs build --strict`; the README is not part of the site.
    readme = (REPO / "README.md").read_text()
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t}
    assert any(t.startswith("docs/") for t in targets), "the README links no docs page"
    missing = sorted(t for t in targets if t and not (REPO / t).exists())
    assert not missing, f"the README links files that do not exist: {missing}"
