"""Two-level bootstrap statistics over replicates and test patients: AUCs per resample, percentile CIs,
paired differences, bootstrap p-values and Holm's correction.

A resample draws the replicates (each a full rerun of what the method draws on the same data) with
replacement and, independently, the test patients: the figure on a resample is the mean over the drawn
replicates of each one's AUC on the drawn patients (`two_level`). With a handful of replicates a plain
bootstrap of them is too narrow, so their deviations are scaled to Student's t first
(`replicate_inflation`).

A resample draws as many patients as the test split holds, with replacement; every image of a drawn
patient comes along, once per draw. Rather than copying images, a resample is a vector of patient
counts (one multinomial draw), and an image's weight in that resample is its patient's count. The AUC
of a weighted sample is the weighted Mann–Whitney statistic

    AUC = Σ_{i pos, j neg} w_i w_j ([s_i > s_j] + ½ [s_i = s_j]) / (Σ_pos w_i · Σ_neg w_j),

which equals the plain AUC of the sample with each image repeated w times (ties counted half, as
scikit-learn's `roc_auc_score`). The scores are sorted once; one sparse product of an (image block ×
patient) incidence matrix with the patient counts then gives, for all resamples at once, the weight of
the positives in each tie group and of the negatives below and tied with it, and one cumulative sum
the Mann–Whitney count.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def patient_resamples(n_patients: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_patients) float counts: how often each patient is drawn in each resample."""
    if n_patients < 1:
        return np.zeros((resamples, 0))
    draws = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=resamples)
    # Stored patient-major, so `weighted_auc`'s (patients × resamples) product needs no copy per call.
    return np.ascontiguousarray(draws.T, dtype=np.float64).T


def replicate_resamples(n_replicates: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_replicates) weights summing to 1 per row: each resample's draw of the replicates, with
    replacement (a replicate drawn twice weighs 2 / n)."""
    if n_replicates < 1:
        return np.zeros((resamples, 0))
    draws = rng.multinomial(n_replicates, np.full(n_replicates, 1.0 / n_replicates), size=resamples)
    return draws / n_replicates


def replicate_inflation(n_replicates: int, ci: float) -> float:
    """The factor on replicate deviations before they are resampled, so that the replicate part of a CI
    has the width of Student's t interval of a mean of n values: √(n / (n − 1)) makes the bootstrap
    variance of the mean the unbiased s² / n, and t_{n−1} / z widens the normal quantile to t's (a
    bootstrap of a handful of replicates alone is too narrow). 0 for one replicate (nothing to resample)."""
    if n_replicates < 2:
        return 0.0
    from scipy.stats import norm, t

    q = (1 + ci) / 2
    return float(np.sqrt(n_replicates / (n_replicates - 1)) * t.ppf(q, n_replicates - 1) / norm.ppf(q))


def rerun_half_width(per_replicate: np.ndarray, ci: float) -> float | None:
    """Half the width of the band where a rerun's differences land: the same paired differences (the
    first column minus each other column), rerun with R new replicate seeds on the same test patients,
    all fall within ± this of this run's with probability at least `ci` (a t prediction band,
    Bonferroni over the K = columns − 1 differences).

    `per_replicate` is (R, 1 + K): each replicate's figure for the method and each baseline on the full
    split. The replicate noise is the two-way (replicate × mix) residual, its variance σ² pooled over
    every column with K(R − 1) degrees of freedom: a replicate seed shifts every mix alike (it cancels in
    a paired difference), the rest is each model's own. A paired difference then has variance 2σ² per
    replicate, and two runs' means of R differ by variance 4σ² / R. Pooling matters with a handful of
    replicates: one difference's own spread rests on R − 1 degrees of freedom, and three close replicates
    give a band far too narrow. None with fewer than two replicates or no baseline.

    A CI for the mean difference is narrower: it holds the *true* difference with probability `ci`, and
    with replicate noise that dwarfs the patients' (as here) it holds a rerun's estimate only about 83 %
    of the time (Cumming & Maillardet 2006), so one row in six of a rerun lands outside. This is the
    interval to hold a rerun against."""
    a = np.asarray(per_replicate, dtype=np.float64)
    r, m = a.shape
    if r < 2 or m < 2:
        return None
    from scipy.stats import t

    residual = a - a.mean(axis=0) - a.mean(axis=1, keepdims=True) + a.mean()
    df = (m - 1) * (r - 1)
    sigma = np.sqrt((residual**2).sum() / df)
    q = 1 - (1 - ci) / (2 * (m - 1))  # Bonferroni over the K differences, two-sided
    return float(t.ppf(q, df) * sigma * 2 / np.sqrt(r))


def two_level(per_replicate: np.ndarray, replicate_weights: np.ndarray, inflation: float) -> np.ndarray:
    """(resamples,) the mean over replicates on each two-level resample: `per_replicate` is (replicates,
    resamples) — each replicate's figure on each resample of the test patients — and resample b draws
    the replicates with `replicate_weights[b]`, their deviations from that resample's mean scaled by
    `inflation` (`replicate_inflation`)."""
    a = np.asarray(per_replicate, dtype=np.float64)
    mean = a.mean(axis=0)
    if inflation == 0.0:
        return mean
    w = np.asarray(replicate_weights, dtype=np.float64).T  # (replicates, resamples)
    return mean + inflation * ((w - 1.0 / len(a)) * (a - mean)).sum(axis=0)


def weighted_auc(scores: np.ndarray, y: np.ndarray, patient: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(resamples,) AUC of `scores` against binary `y` under each row of patient `counts` (resamples ×
    patients), an image weighing the count of its `patient` (a column index into `counts`); NaN where
    a resample holds no positive or no negative image, or where any score is NaN."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y).astype(bool)
    patient = np.asarray(patient)
    if not y.any() or y.all() or np.isnan(scores).any():
        return np.full(len(counts), np.nan)
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive, patient = scores[order], y[order], patient[order]
    group = np.cumsum(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]) - 1  # tie group of each image
    pos_groups = _runs(group[positive])[0]  # tie groups holding a positive, ascending score
    k = np.searchsorted(pos_groups, group)  # each image's first positive group at or above it
    tied = np.zeros(len(group), dtype=bool)
    inside = k < len(pos_groups)
    tied[inside] = pos_groups[k[inside]] == group[inside]
    # Negatives fall into slots: 2k = strictly between positive groups k-1 and k, 2k+1 = tied with
    # positive group k. Only the slots that hold a negative become rows (R of them), so the cumulative
    # sum runs over at most 2·min(positives, negatives) + 1 rows. Slots ascend with the score.
    slots, neg_row = _runs(np.where(tied, 2 * k + 1, 2 * k)[~positive])
    n_rows = len(slots)
    # Positives: grouped by the last negative row strictly below them (−1: none, row n_rows), and once
    # more, for positive groups with tied negatives, by that tie row (rows after 2·n_rows + 1).
    below = np.searchsorted(slots, 2 * k[positive], side="right") - 1  # slots ≤ 2k lie below group k
    tie_slot = 2 * k[positive] + 1
    tie_at = np.searchsorted(slots, tie_slot)
    has_tie = (tie_at < n_rows) & (slots[np.minimum(tie_at, n_rows - 1)] == tie_slot)
    tie_rows, tie_index = _runs(tie_at[has_tie])
    rows = np.concatenate([neg_row, n_rows + 1 + below, 2 * n_rows + 1 + tie_index])
    cols = np.concatenate([patient[~positive], patient[positive], patient[positive][has_tie]])
    incidence = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)),
                                  shape=(2 * n_rows + 1 + len(tie_rows), counts.shape[1]))
    sums = incidence @ counts.T  # (rows, resamples): the patients' counts summed per row
    neg, pos_by_below, pos_by_tie = sums[:n_rows], sums[n_rows:2 * n_rows + 1], sums[2 * n_rows + 1:]
    neg_cum = np.cumsum(neg, axis=0)
    wins = (pos_by_below[1:] * neg_cum).sum(axis=0) + 0.5 * (pos_by_tie * neg[tie_rows]).sum(axis=0)
    pairs = pos_by_below.sum(axis=0) * neg_cum[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def _runs(ascending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(..., return_inverse=True) of an ascending array, in one pass."""
    starts = np.r_[True, ascending[1:] != ascending[:-1]] if len(ascending) else np.zeros(0, dtype=bool)
    return ascending[starts], np.cumsum(starts) - 1


def percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float] | None:
    """The percentile interval holding `ci` of the finite values (numpy's linear quantiles); None if none."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    lo, hi = np.quantile(values, [(1 - ci) / 2, (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap_p(differences: np.ndarray) -> float | None:
    """Two-sided bootstrap p-value of a zero difference: twice the smaller tail share of resampled
    differences at or beyond 0, each share (1 + count) / (1 + resamples) so it is never 0; capped at 1."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not len(d):
        return None
    below = (1 + np.count_nonzero(d <= 0)) / (1 + len(d))
    above = (1 + np.count_nonzero(d >= 0)) / (1 + len(d))
    return float(min(1.0, 2 * min(below, above)))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order (None stays None, not counted)."""
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * p))  # monotone: never below a smaller p's adjustment
        adjusted[i] = running
    return adjusted


def verdict(ci: tuple[float, float] | None, p_holm: float | None, alpha: float) -> str:
    """Words from the paired CI: "beats" / "loses to" when the CI excludes 0 on that side and the
    Holm-corrected p is below `alpha`; otherwise "no difference shown"."""
    if ci is None or p_holm is None or p_holm >= alpha:
        return "no difference shown"
    if ci[0] > 0:
        return "beats"
    if ci[1] < 0:
        return "loses to"
    return "no difference shown"
