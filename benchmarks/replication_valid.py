"""Which interval holds a rerun? Measured on the valid split, from replicates already trained (a study
script; the test split is never read):

    python benchmarks/replication_valid.py --experiments replicate-3-4-5 replicate-6-7-8 replicate-9-10-11

Input: each model's valid score (`best_valid_score`, the zero-shot mean AUC on valid that picked its
step): the workspace's replicates from `models/vlp/<mix>/seed-<r>/history.json`, each named DVC
experiment's from its MLflow runs (tag `dvc_exp_name`; the newest run per mix and replicate). With 12
replicates of every mix this replays `pairaug replicate` on every split of them into two disjoint runs of
R replicates, and counts, per interval rule, the share of splits where at most one of the six PairAug −
baseline differences of a run lies outside the other run's interval (the check `pairaug replicate` prints), and the mean
half-width; and whether the per-replicate differences look normal (Shapiro–Wilk, excess kurtosis). Patient noise is left out (it is small beside the replicates' and a rerun shares it). Rules:

- `ci`: a t interval for the mean difference from that pair's own R replicates (the replicate part of the
  report's CI);
- `rerun, own sd`: the t prediction interval of a rerun from that pair's own replicates, 95 % per row;
- `rerun band`: `stats.rerun_half_width` as the report computes it (pooled replicate × mix residual,
  Bonferroni over the six baselines).
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from scipy.stats import kurtosis, shapiro, t

from pairaug.errors import InputError, PairaugError
from pairaug.report.stats import rerun_half_width

MIXES = ["pairaug", "none", "real_dup", "text_only", "image_only", "inter", "intra"]  # PairAug first


def workspace_scores(root: Path) -> dict[int, np.ndarray]:
    """{replicate: valid score per mix} from the workspace's models."""
    out: dict[int, np.ndarray] = {}
    for folder in sorted((root / "models/vlp" / MIXES[0]).glob("seed-*")):
        histories = [root / "models/vlp" / m / folder.name / "history.json" for m in MIXES]
        missing = [h for h in histories if not h.exists()]
        if missing:
            raise InputError("no trained model here (run `dvc repro` or `dvc pull` first)", file=missing[0])
        out[int(folder.name.split("-")[1])] = np.array([json.loads(h.read_text())["best_score"] for h in histories])
    return out


def experiment_scores(names: list[str], root: Path) -> dict[int, np.ndarray]:
    """{replicate: valid score per mix} from the MLflow runs of the named DVC experiments (read only)."""
    from mlflow.entities import ViewType

    from pairaug.tracking.store import load_config, open_existing_store

    if not names:
        return {}
    cfg = load_config(root / "params.yaml")
    client = open_existing_store(cfg, root)
    experiment = client.get_experiment_by_name(cfg.experiment)
    out: dict[int, dict[str, float]] = {}
    for name in names:
        runs = [] if experiment is None else client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.dvc_exp_name = '{name}'",
            run_view_type=ViewType.ACTIVE_ONLY, max_results=10_000, order_by=["attributes.start_time ASC"])
        runs = [r for r in runs if "best_valid_score" in r.data.metrics]
        if not runs:
            raise InputError(f"no MLflow run with a valid score for DVC experiment {name!r} "
                             f"(run `pairaug replicate --name {name}` first)", file=root / "mlflow.db")
        for run in runs:  # oldest first: a newer run of the same mix and replicate wins
            tags = run.data.tags
            out.setdefault(int(tags["seed"]), {})[tags["mix"]] = run.data.metrics["best_valid_score"]
    return {r: np.array([scores[m] for m in MIXES]) for r, scores in out.items() if set(MIXES) <= set(scores)}


def half_widths(run: np.ndarray, ci: float) -> dict[str, np.ndarray]:
    """run: (R, mixes) valid scores → each rule's half-width per baseline."""
    reps = len(run)
    sd = (run[:, :1] - run[:, 1:]).std(axis=0, ddof=1)
    q = (1 + ci) / 2
    return {"ci": t.ppf(q, reps - 1) * sd / np.sqrt(reps),
            "rerun, own sd": t.ppf(q, reps - 1) * sd * np.sqrt(2 / reps),
            "rerun band": np.full(run.shape[1] - 1, rerun_half_width(run, ci))}


def replay(scores: np.ndarray, reps: int, ci: float) -> dict[str, dict[str, float]]:
    """Every split of the replicates into two disjoint runs of `reps`: per rule, the share with ≤ 1 row
    outside, the mean count of rows outside, the mean half-width."""
    n = len(scores)
    tally: dict[str, list] = {}
    for a in itertools.combinations(range(n), reps):
        rest = [i for i in range(n) if i not in a]
        for b in itertools.combinations(rest, reps):
            if b < a:
                continue  # each unordered split once
            first, second = scores[list(a)], scores[list(b)]
            d1 = (first[:, :1] - first[:, 1:]).mean(axis=0)
            d2 = (second[:, :1] - second[:, 1:]).mean(axis=0)
            w1, w2 = half_widths(first, ci), half_widths(second, ci)
            for rule in w1:
                outside = int(((np.abs(d1 - d2) > w1[rule]) | (np.abs(d1 - d2) > w2[rule])).sum())
                tally.setdefault(rule, []).append((outside, float(w1[rule].mean())))
    return {rule: {"splits": len(v), "at_most_one": float(np.mean([o <= 1 for o, _ in v])),
                   "rows_outside": float(np.mean([o for o, _ in v])), "half_width": float(np.mean([w for _, w in v]))}
            for rule, v in tally.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", nargs="*", default=[], help="DVC experiments whose replicates join the workspace's")
    p.add_argument("--replicates", type=int, nargs="+", default=[3, 4, 5], help="replicates per run (R)")
    p.add_argument("--ci", type=float, default=0.95)
    args = p.parse_args()
    from pairaug.paths import repo_root

    root = repo_root()
    try:
        by_rep = {**experiment_scores(args.experiments, root), **workspace_scores(root)}
    except PairaugError as e:
        raise SystemExit(f"replication_valid: {e}") from None
    if len(by_rep) < 2 * min(args.replicates):
        raise SystemExit(f"replication_valid: {len(by_rep)} replicates with every mix trained; two runs of "
                         f"{min(args.replicates)} need {2 * min(args.replicates)} (name more --experiments)")
    scores = np.array([by_rep[r] for r in sorted(by_rep)])
    print(f"{len(scores)} replicates of {len(MIXES)} mixes ({', '.join(map(str, sorted(by_rep)))}); valid scores")
    d = scores[:, :1] - scores[:, 1:]  # per-replicate differences, standardised per baseline: normal, or heavy tails?
    z = ((d - d.mean(axis=0)) / d.std(axis=0, ddof=1)).ravel()
    print(f"per-replicate differences: Shapiro–Wilk p = {shapiro(z).pvalue:.2f} over {len(z)}, "
          f"excess kurtosis {kurtosis(z):.2f}\n")
    print("| R | interval | splits | ≤ 1 row outside | rows outside (of 6) | mean half-width |\n|---|---|---|---|---|---|")
    for reps in args.replicates:
        if 2 * reps > len(scores):
            continue
        for rule, r in replay(scores, reps, args.ci).items():
            print(f"| {reps} | {rule} | {r['splits']} | {r['at_most_one']:.3f} | {r['rows_outside']:.2f} | "
                  f"{r['half_width']:.4f} |")


if __name__ == "__main__":
    main()
