"""`pairaug curve run | collect`: the scarcity curve over DVC experiments (report/scarcity.py); `pairaug
replicate`: the ablation rerun with other replicate seeds, compared with the workspace's (report/replication.py)."""

from __future__ import annotations

import argparse

DEFAULT_SIZES = [25, 50, 100, 200]  # the measured curve (docs/results.md); 3 replicates per size


def _cmd_curve(args: argparse.Namespace) -> None:
    from pairaug.paths import repo_root
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


def _cmd_replicate(args: argparse.Namespace) -> None:
    import json

    from pairaug.errors import InputError
    from pairaug.layout import ABLATION_JSON
    from pairaug.params import load_params, replicates
    from pairaug.paths import repo_root
    from pairaug.report.experiments import read_experiment_json, run_temp_experiment
    from pairaug.report.replication import compare, write_replication

    root = repo_root()
    current = replicates(load_params(root / "params.yaml"))
    reps = args.replicates or list(range(max(current) + 1, max(current) + 1 + len(current)))
    params = [f"replicates=[{','.join(map(str, reps))}]", *(args.set_param or [])]
    name = args.name or "replicate-" + "-".join(map(str, reps)) + "".join(
        "-" + p.replace("=", "").replace(".", "_") for p in args.set_param or [])
    ablation = root / ABLATION_JSON
    if not ablation.exists():
        raise InputError("no ablation in the workspace to compare with (run `dvc repro` first)", file=ablation)
    if not args.compare_only:
        print(f"replicate: dvc exp run --temp -n {name} {' '.join('-S ' + p for p in params)}", flush=True)
        run_temp_experiment(root, name, params, f"replicate {name}")
    other = read_experiment_json(root, name, ABLATION_JSON, hint=f"run `pairaug replicate --name {name}`")
    result = compare(json.loads(ablation.read_text()), other)
    this = "replicates " + ",".join(map(str, current))
    print(write_replication(result, this, name, root / args.out), end="")


def register_replicate(sub: argparse._SubParsersAction) -> None:
    from pairaug.layout import REPLICATION_MD

    p = sub.add_parser("replicate", help="rerun the ablation with other replicate seeds and compare the verdicts",
                       description="Run `dvc exp run --temp` with other replicate seeds (same data and priors; "
                                   "default: as many new seeds as params.yaml lists, after its largest), then "
                                   "print both runs' verdicts side by side: whether each run's difference lies in "
                                   "the other's interval, and whether any verdict flips. `-S seed=1` (with the "
                                   "same replicates) measures a redrawn dataset instead.")
    p.add_argument("--replicates", type=int, nargs="+", help="the experiment's replicate seeds")
    p.add_argument("-S", "--set-param", action="append", metavar="KEY=VALUE",
                   help="further params for the experiment, as `dvc exp run -S` takes them (e.g. seed=1)")
    p.add_argument("--name", help="the experiment's name (default: replicate-<seeds>[-<params>])")
    p.add_argument("--compare-only", action="store_true", help="compare with an experiment run before")
    p.add_argument("--out", default=REPLICATION_MD,
                   help="where the comparison goes (Markdown; the rows as .json beside it)")
    p.set_defaults(func=_cmd_replicate)
