"""How the real-only baseline (`none`) responds to the training settings, on the valid split only.

For each target size (`data.phantom.train_patients`) the target is prepared into a scratch folder as the
`prepare` stage would, then `none` is trained with each setting of `pretrain.train` for each replicate;
the figure is the selected checkpoint's valid zero-shot mean AUC (what the pipeline selects on), mean
and spread over replicates. The test split is never read.

    python benchmarks/budget_study.py --sizes 100 200 --set lr=0.0005 --set lr=0.0002 --out study.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def prepare(size: int, workdir: Path) -> Path:
    """The target prepared at `size` train patients in `workdir` (the `prepare` stage, as DVC runs it)."""
    from pairaug.params import load_params

    params = load_params(ROOT / "params.yaml")
    params["data"]["phantom"]["train_patients"] = size
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if not (workdir / "data" / "prepared").exists():
        subprocess.run([sys.executable, str(ROOT / "stages" / "prepare.py")], cwd=workdir, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return workdir / "data" / "prepared"


def setting(text: str) -> dict:
    """'lr=0.0002,epochs=32' → {'lr': 0.0002, 'epochs': 32}."""
    from pairaug.params import read_yaml

    out = {}
    for item in text.split(","):
        key, value = item.split("=", 1)
        out[key.strip()] = read_yaml(value)  # as DVC reads `-S` values (YAML 1.2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    ap.add_argument("--set", dest="settings", action="append", default=[],
                    help="pretrain.train overrides, comma-separated (repeat for several settings)")
    ap.add_argument("--replicates", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pairaug-budget-study")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from pairaug.params import load_params, section
    from pairaug.train.pretrain import PretrainConfig, pretrain_mix

    params = load_params(ROOT / "params.yaml")
    base = section(PretrainConfig, params, "pretrain")
    rows = []
    for size in args.sizes:
        prepared = prepare(size, args.workdir / f"size-{size}")
        for text in args.settings or [f"lr={base.train.lr}"]:
            cfg = replace(base, train=replace(base.train, **setting(text)))
            summary = pretrain_mix("none", cfg, params.get("seed", 0), prepared / "pairs.parquet", prepared.parent,
                                   args.workdir / "model", replicates=args.replicates)
            scores = [s["valid_score"] for s in summary["seeds"].values()]
            row = {"train_patients": size, "setting": text, "steps": summary["seeds"][str(args.replicates[0])]["steps"],
                   "valid_mean": float(np.mean(scores)), "valid_sd": float(np.std(scores, ddof=1)),
                   "best_steps": [s["best_step"] for s in summary["seeds"].values()], "valid": scores}
            rows.append(row)
            print(f"{size:>4} patients  {text:<32} steps {row['steps']:>4}  valid {row['valid_mean']:.3f} "
                  f"± {row['valid_sd']:.3f}  best steps {row['best_steps']}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
