"""How often does a rerun land inside a run's interval? A simulation of `pairaug replicate` (a study
script, numpy only, a few seconds):

    python benchmarks/replication_capture.py                       # the defaults below
    python benchmarks/replication_capture.py --sigma 0.006 --replicates 5

Model: seven compared mixes (PairAug and six baselines). Replicate r of mix m scores
mu_m + b_r + e_mr: b_r a shift every mix shares in that replicate (sd --block), e_mr its own replicate
noise (sd --sigma; the default is the valid-split replicate sd of `none`, 12 replicates, docs/training.md).
The test patients add a paired-difference term (sd --tau; default: the patient-only bootstrap sd of the
zero-shot differences in the default run, ~0.001 with 800 test patients) that both runs share, since a
replication keeps the data. Each simulated replication runs the ablation twice with disjoint replicate
seeds and asks, per baseline, whether either run's PairAug − baseline difference falls outside the other
run's interval — the check `pairaug replicate` prints. Three intervals:

- `ci`: the report's CI for the true difference: the replicate part Student's t with R − 1 degrees of
  freedom from that pair's own replicates (report/stats.py), combined with the patient term (their
  quantiles added in quadrature: the patient term is small beside the replicate one);
- `ci pooled`: the same with the replicate variance pooled over the seven mixes (the residual of the
  additive mix + replicate fit, (M − 1)(R − 1) degrees of freedom) — the alternative considered;
- `rerun, own sd`: a t prediction interval of where a rerun's estimate lands, 95 % per row, from that
  pair's own replicates (replicate noise only, the patients being the same);
- `rerun band`: the report's (stats.rerun_half_width): the same with the pooled residual variance and
  Bonferroni over the six baselines, so a rerun's six differences all land inside with ≥ 95 %.

Printed per interval: coverage of the true difference, the mean number of the six rows with a run's
difference outside the other run's interval, the share of replications with at most one such row
(the check `pairaug replicate` prints), and the mean half-width.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm, t

from pairaug.report.stats import rerun_half_width

BASELINES = 6


def intervals(y: np.ndarray, patient: np.ndarray, tau: float, ci: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One run: y (sims, mixes, replicates), PairAug first; patient (sims, baselines) the shared patient
    term. Returns the differences (sims, baselines) and each interval's half-width (sims, baselines)."""
    sims, mixes, reps = y.shape
    q = (1 + ci) / 2
    d = y[:, :1] - y[:, 1:]  # (sims, baselines, replicates) per-replicate paired differences
    delta = d.mean(axis=2) + patient
    s_pair = d.std(axis=2, ddof=1)
    resid = y - y.mean(axis=2, keepdims=True) - y.mean(axis=1, keepdims=True) + y.mean(axis=(1, 2), keepdims=True)
    df_pool = (mixes - 1) * (reps - 1)
    s_pool = np.sqrt((resid**2).sum(axis=(1, 2)) / df_pool)[:, None] * np.sqrt(2) * np.ones((1, BASELINES))
    z_tau = norm.ppf(q) * tau
    return delta, {
        "ci": np.hypot(t.ppf(q, reps - 1) * s_pair / np.sqrt(reps), z_tau),
        "ci pooled": np.hypot(t.ppf(q, df_pool) * s_pool / np.sqrt(reps), z_tau),
        "rerun, own sd": t.ppf(q, reps - 1) * s_pair * np.sqrt(2 / reps),
        "rerun band": t.ppf(1 - (1 - ci) / (2 * BASELINES), df_pool) * s_pool * np.sqrt(2 / reps),
    }


def simulate(sigma: float, tau: float, block: float, reps: int, sims: int, ci: float, seed: int) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    mu = np.r_[0.810, np.linspace(0.800, 0.808, BASELINES)]  # small true gaps, as measured
    truth = mu[0] - mu[1:]
    patient = rng.normal(0.0, tau, (sims, BASELINES))  # the same test patients in both runs

    def run() -> tuple[np.ndarray, dict[str, np.ndarray]]:
        y = mu[None, :, None] + rng.normal(0.0, block, (sims, 1, reps)) + rng.normal(0.0, sigma, (sims, len(mu), reps))
        return intervals(y, patient, tau, ci)

    y0 = mu[None, :, None] + rng.normal(0.0, sigma, (1, len(mu), reps))  # the band is the report's, to the bit
    assert np.isclose(intervals(y0, patient[:1], tau, ci)[1]["rerun band"][0, 0], rerun_half_width(y0[0].T, ci))
    (a, wa), (b, wb) = run(), run()
    out = {}
    for name in wa:
        outside = (np.abs(a - b) > wb[name]) | (np.abs(b - a) > wa[name])
        out[name] = {"coverage": float(np.mean(np.abs(a - truth) <= wa[name])) if name.startswith("ci") else None,
                     "rows_outside": float(outside.sum(axis=1).mean()),
                     "at_most_one": float(np.mean(outside.sum(axis=1) <= 1)),
                     "half_width": float(wa[name].mean())}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sigma", type=float, nargs="+", default=[0.006, 0.009, 0.015], help="replicate sd of a mix")
    p.add_argument("--tau", type=float, nargs="+", default=[0.001, 0.005], help="patient sd of a paired difference")
    p.add_argument("--block", type=float, default=0.005, help="sd of the shift shared by every mix in a replicate")
    p.add_argument("--replicates", type=int, nargs="+", default=[3, 5])
    p.add_argument("--sims", type=int, default=20000)
    p.add_argument("--ci", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print("| R | replicate sd | patient sd | interval | covers the truth | rows outside (of 6) | ≤ 1 row outside "
          "| mean half-width |\n|---|---|---|---|---|---|---|---|")
    for reps in args.replicates:
        for sigma in args.sigma:
            for tau in args.tau:
                for name, r in simulate(sigma, tau, args.block, reps, args.sims, args.ci, args.seed).items():
                    cover = "–" if r["coverage"] is None else f"{r['coverage']:.3f}"
                    print(f"| {reps} | {sigma} | {tau} | {name} | {cover} | {r['rows_outside']:.2f} | "
                          f"{r['at_most_one']:.2f} | {r['half_width']:.4f} |")


if __name__ == "__main__":
    main()
