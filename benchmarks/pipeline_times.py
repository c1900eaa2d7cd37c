"""Wall time of every pipeline stage, of a no-op `dvc repro`, and of a param change, measured in one run.

    python benchmarks/pipeline_times.py --clone -S 'replicates=[0]' --change prune.inter_tau=0.35
    python benchmarks/pipeline_times.py --repo /tmp/copy --json times.json     # an existing workspace

`--clone` runs on a fresh `git clone` of the repository's HEAD in a temporary folder (a clean checkout:
nothing cached, its own DVC cache unless `--cache`, its own mlflow.db), with the clone's `src/` first on
PYTHONPATH. Every stage's peak memory (the resident memory of DVC's process tree) is sampled too. One
`dvc repro` runs the pipeline; a stage's time runs from DVC's "Running stage" line to the next one (or
the end), so it includes DVC hashing and caching the stage's outputs. A stage DVC skips is listed apart:
on a clean clone, a stage whose outputs are all in git (`cache: false` metrics) and whose inputs came out
byte-identical to dvc.lock "didn't change" and does not run; on another CPU its inputs differ and it runs,
so `--force` gives that machine's figure. Then a plain `dvc repro` with
nothing to do is timed, and, with `--change`, the `dvc repro` that follows editing params.yaml (the
stages it reruns are listed). Prints a table; `--json` keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml


def set_param(params_file: Path, assignment: str) -> None:
    """Apply `a.b.c=value` (value parsed as YAML, as `dvc exp run -S` does) to a params file."""
    key, _, raw = assignment.partition("=")
    params = yaml.safe_load(params_file.read_text())
    node = params
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = yaml.safe_load(raw)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


def tree_rss(root: psutil.Process) -> int:
    """Resident memory of a process and all its descendants (dvc → shell → the stage's python, its ranks)."""
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


def repro(repo: Path, env: dict, force: bool = False) -> tuple[float, dict[str, dict[str, float]], dict[str, str]]:
    """Run `dvc repro` in repo, streaming its output; return (seconds, {stage: {"s", "peak_mib"}},
    {skipped stage: DVC's reason}).

    A thread samples the process tree's resident memory every 0.2 s; each stage gets the peak seen
    between its "Running stage" line and the next (a spike shorter than that can be missed).
    """
    start = time.perf_counter()
    marks: list[tuple[str, float]] = []
    skipped: dict[str, str] = {}
    peaks: list[int] = [0]
    lines: list[str] = []
    proc = subprocess.Popen(["dvc", "repro", *(["--force"] if force else [])], cwd=repo, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.wait(0.2):
            peaks[-1] = max(peaks[-1], tree_rss(root))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(r"Running stage '([^']+)'", line):
            marks.append((m.group(1), time.perf_counter()))
            peaks.append(0)
            print(f"  [{marks[-1][1] - start:7.1f} s] {m.group(1)}", flush=True)
        elif m := re.search(r"Stage '([^']+)' (didn't change|is cached)", line):
            skipped[m.group(1)] = m.group(2)
            if marks:  # a skip amid a run; a no-op run would list every stage
                print(f"  [{time.perf_counter() - start:7.1f} s] {m.group(1)}: {m.group(2)}, skipped", flush=True)
    proc.wait()
    end = time.perf_counter()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed ({proc.returncode}):\n{''.join(lines[-60:])}")
    stages = {name: {"s": (marks[i + 1][1] if i + 1 < len(marks) else end) - t, "peak_mib": peaks[i + 1] / 2**20}
              for i, (name, t) in enumerate(marks)}
    return end - start, stages, skipped


def clone(repo: Path, cache: Path | None = None) -> Path:
    """A fresh `git clone` of repo's HEAD in a temporary folder; `cache`: a DVC cache to share (its run
    cache then lets another workspace restore these stages instead of running them)."""
    dest = Path(tempfile.mkdtemp(prefix="pairaug-times-")) / "repo"
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    if cache is not None:
        subprocess.run(["dvc", "cache", "dir", "--local", str(cache.resolve())], cwd=dest, check=True)
    return dest


def measure(repo: Path, sets: list[str] = (), changes: list[str] = (), force: bool = False) -> dict:
    """Full run (per-stage seconds and peak memory), then a no-op run, then one run per param change."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": str(repo / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DVC_ROOT", None)
    env.pop("MLFLOW_TRACKING_URI", None)  # the workspace's own mlflow.db, never a team server
    for s in sets:
        set_param(repo / "params.yaml", s)
    print(f"workspace: {repo}", flush=True)
    full, stages, skipped = repro(repo, env, force)
    noop, _, _ = repro(repo, env)
    result: dict = {"workspace": str(repo), "sets": list(sets), "stages": stages, "skipped": skipped,
                    "full_s": full, "noop_s": noop, "changes": {}}
    for change in changes:
        set_param(repo / "params.yaml", change)
        seconds, reran, _ = repro(repo, env)
        result["changes"][change] = {"s": seconds, "share": seconds / full, "reran": sorted(reran)}
    return result


def summary(result: dict) -> str:
    stages, full = result["stages"], result["full_s"]
    lines = ["| stage | s | share | peak MiB |", "|---|---|---|---|"]
    for name, st in sorted(stages.items(), key=lambda kv: -kv[1]["s"]):
        lines.append(f"| `{name}` | {st['s']:.1f} | {st['s'] / full:.1%} | {st['peak_mib']:.0f} |")
    top = max(stages, key=lambda k: stages[k]["s"]) if stages else None
    lines += ["", f"full run: {full:.1f} s ({full / 60:.1f} min); dominant stage: {top}",
              f"no-op `dvc repro`: {result['noop_s']:.1f} s"]
    if result.get("skipped"):
        lines.append("skipped by DVC (not in the full run's time): "
                     + ", ".join(f"{k} ({v})" for k, v in result["skipped"].items()))
    for change, c in result["changes"].items():
        lines.append(f"after {change}: {c['s']:.1f} s = {c['share']:.1%} of the full run "
                     f"({len(c['reran'])} stages rerun)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--clone", action="store_true", help="measure on a fresh clone of the repo's HEAD")
    ap.add_argument("--cache", type=Path, help="with --clone: share this DVC cache (e.g. the repo's .dvc/cache)")
    ap.add_argument("--force", action="store_true", help="rerun every stage (dvc repro --force)")
    ap.add_argument("-S", dest="sets", action="append", default=[], help="param override before the run")
    ap.add_argument("--change", action="append", default=[], help="param edit timed after the full run")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    repo = clone(args.repo.resolve(), args.cache) if args.clone else args.repo.resolve()
    result = measure(repo, args.sets, args.change, args.force)
    print("\n" + summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
