"""Peak memory of pipeline stages: run each one in a repository and sample the RSS of its process tree.

    python benchmarks/stage_memory.py fit-scorer fit-generator inter-generate image-only-generate
    python benchmarks/stage_memory.py --repo /tmp/copy --budget-gib 4 --json memory.json inter-generate
    python benchmarks/stage_memory.py --cmd "python stages/generate.py inter"      # any command

A stage runs as `dvc repro --single-item --force <stage>` (forced: an up-to-date stage would do nothing;
its upstream outputs must already be there). Every `--interval` seconds the script sums the resident
memory of the command and all its descendants (dvc → shell → the stage's python and any workers) with
psutil, and keeps the largest sum and the largest single process. Sampling can miss a spike shorter
than the interval; the kernel's own high-water mark of the largest finished descendant (getrusage) is
printed as a cross-check. Prints a table; exits 1 when a command fails or a peak reaches the budget.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass
class Measurement:
    name: str
    command: str
    returncode: int
    wall_s: float
    peak_tree_rss: int  # bytes: the largest sampled sum over the process tree
    peak_process_rss: int  # bytes: the largest single process seen
    peak_process: str  # that process's command line
    samples: int


def tree_rss(root: psutil.Process) -> tuple[int, int, str]:
    """(sum of RSS over root and its descendants, largest single RSS, that process's command line)."""
    total, biggest, name = 0, 0, ""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0, ""
    for p in procs:
        try:
            rss = p.memory_info().rss
            if rss > biggest:
                biggest, name = rss, " ".join(p.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # it ended between listing and reading
        total += rss
    return total, biggest, name


def measure(name: str, command: list[str], cwd: Path, interval: float = 0.05, log: Path | None = None) -> Measurement:
    """Run `command` in `cwd` to completion, sampling its process tree's memory every `interval` seconds."""
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        peak_tree, peak_proc, peak_name, samples = 0, 0, "", 0
        while proc.poll() is None:
            total, biggest, who = tree_rss(root)
            samples += 1
            peak_tree = max(peak_tree, total)
            if biggest > peak_proc:
                peak_proc, peak_name = biggest, who
            time.sleep(interval)
        returncode = proc.wait()
    finally:
        if log:
            out.close()
    return Measurement(name, shlex.join(command), returncode, time.monotonic() - start, peak_tree, peak_proc,
                       peak_name, samples)


def table(rows: list[Measurement], budget: float, width: int = 26) -> str:
    lines = [f"{'stage':<{width}} {'rc':>3} {'wall s':>8} {'peak tree':>11} {'peak process':>13}  "
             f"budget {budget / GIB:.1f} GiB"]
    for m in rows:
        verdict = "ok" if m.returncode == 0 and m.peak_tree_rss < budget else ("FAILED" if m.returncode else "OVER")
        lines.append(f"{m.name:<{width}} {m.returncode:>3} {m.wall_s:>8.1f} {m.peak_tree_rss / MIB:>7.0f} MiB "
                     f"{m.peak_process_rss / MIB:>9.0f} MiB  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stages", nargs="*", help="dvc stage names, run with `dvc repro --single-item --force`")
    ap.add_argument("--cmd", action="append", default=[], help="a command to measure instead (repeatable)")
    ap.add_argument("--repo", type=Path, default=Path.cwd(), help="where to run (default: here)")
    ap.add_argument("--budget-gib", type=float, default=4.0)
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between samples")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--logs", type=Path, help="folder for each command's output (default: discarded)")
    args = ap.parse_args(argv)
    jobs = [(s, ["dvc", "repro", "--single-item", "--force", s]) for s in args.stages]
    jobs += [(c, shlex.split(c)) for c in args.cmd]
    if not jobs:
        ap.error("name at least one stage or --cmd")
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    budget = args.budget_gib * GIB
    width = max(26, *(len(name) for name, _ in jobs))
    rows = []
    for name, command in jobs:
        log = args.logs / f"{len(rows):02d}-{name.replace('/', '_').replace(' ', '_')[:40]}.log" if args.logs else None
        rows.append(measure(name, command, args.repo.resolve(), args.interval, log))
        print(table(rows[-1:], budget, width).splitlines()[-1], flush=True)
    print()
    print(table(rows, budget, width))
    # ru_maxrss is in KiB on Linux: the largest finished descendant over the whole run.
    kernel = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"kernel high-water mark of the largest single process: {kernel / MIB:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps({"budget_bytes": budget, "kernel_max_process_rss": kernel,
                                         "stages": [asdict(m) for m in rows]}, indent=2) + "\n")
    return 0 if all(m.returncode == 0 and m.peak_tree_rss < budget for m in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
