"""`pairaug curve run | collect`: the scarcity curve over DVC experiments (see report/scarcity.py)."""

from __future__ import annotations

import argparse

DEFAULT_SIZES = [25, 50, 100, 200]  # the measured curve (docs/results.md); ~65 min with 3 seeds on 2 cores


def _cmd_curve(args: argparse.Namespace) -> None:
    from pairaug.io import repo_root
    from pairaug.report.scarcity import collect, run_experiment, write_curve

    root = repo_root()
    if args.action == "run":
        for size in args.sizes:
            print(f"curve: data.phantom.train_patients={size} (experiment curve-{size})", flush=True)
            run_experiment(size, root, args.set_param or [])
    points = collect(root, args.sizes)
    write_curve(points, root / "metrics")
    print(f"curve: {len(points)} sizes → metrics/scarcity.json, metrics/scarcity.png")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curve", help="the scarcity curve: the ablation at several train sizes (DVC experiments)",
                       description="run: one `dvc exp run --temp` per size, then collect. collect: read the "
                                   "experiments curve-<size> and write metrics/scarcity.{json,png}.")
    p.add_argument("action", choices=["run", "collect"])
    p.add_argument("--sizes", type=int, nargs="+", default=DEFAULT_SIZES,
                   help=f"data.phantom.train_patients values (default: {' '.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("-S", "--set-param", action="append", metavar="KEY=VALUE",
                   help="further params for every size, as `dvc exp run -S` takes them")
    p.set_defaults(func=_cmd_curve)
