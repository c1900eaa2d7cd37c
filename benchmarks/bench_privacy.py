"""What the memorisation check costs against the generation it checks, measured in one run (a script, not a
pytest benchmark: run it in a workspace whose generation inputs are there, e.g. after `dvc repro prune`):

    python benchmarks/bench_privacy.py                  # the repository's workspace, default params
    python benchmarks/bench_privacy.py --json out.json  # also keep the figures

It runs `dvc repro --force --single-item` for each generation stage (`inter-generate`,
`image-only-generate`, `intra-generate`), then `prune` (what `privacy` reads; timed, not in the ratio),
then `privacy`, timing each the way the pipeline pays for it: DVC's hashing and caching included, wall time and the CPU time of the stage's process tree
(user + system, from `getrusage(RUSAGE_CHILDREN)`; on a shared machine CPU time is the steadier
figure). Prints both ratios privacy / (the three generation stages). Target: ≤ 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

GENERATION = ("inter-generate", "image-only-generate", "intra-generate")
BETWEEN = "prune"  # privacy reads its kept pairs
CHECK = "privacy"


def timed_repro(repo: Path, stage: str, env: dict) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(["dvc", "repro", "--force", "--single-item", stage], cwd=repo, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"dvc repro {stage} failed ({proc.returncode}):\n{proc.stdout[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"  {stage:22} wall {wall:7.1f} s   cpu {cpu:7.1f} s", flush=True)
    return {"wall_s": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1",
           "PYTHONPATH": str(repo / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("DVC_ROOT", None)
    print(f"workspace: {repo}", flush=True)
    stages = {stage: timed_repro(repo, stage, env) for stage in (*GENERATION, BETWEEN, CHECK)}
    gen = {k: sum(stages[s][k] for s in GENERATION) for k in ("wall_s", "cpu_s")}
    ratio = {k: stages[CHECK][k] / gen[k] for k in gen}
    metrics = json.loads((repo / "metrics" / "privacy.json").read_text())
    result = {"stages": stages, "generation": gen, "ratio": ratio, "images": metrics["images"],
              "near_copies": metrics["near_copies"], "kept_near_copies": metrics["kept_near_copies"],
              "kept": metrics["kept"], "thresholds": metrics["thresholds"]}
    print(f"\ngeneration stages: wall {gen['wall_s']:.1f} s, cpu {gen['cpu_s']:.1f} s")
    print(f"memorisation check ({metrics['images']} synthetic images): wall {stages[CHECK]['wall_s']:.1f} s, "
          f"cpu {stages[CHECK]['cpu_s']:.1f} s")
    print(f"ratio check / generation: wall {ratio['wall_s']:.1%}, cpu {ratio['cpu_s']:.1%} (target <= 10%)")
    print(f"near-copies: {metrics['near_copies']} of {metrics['images']} images, {metrics['kept_near_copies']} of "
          f"{metrics['kept']} kept; thresholds pixel {metrics['thresholds']['pixel']}, embedding "
          f"{metrics['thresholds']['embedding']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
