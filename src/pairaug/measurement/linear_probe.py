"""Linear probing: a frozen image encoder, a new logistic-regression head per label.

Trained on 1%, 10% and 100% of the labelled train split; the regularisation strength is chosen on
the valid split, never the test split. The small fractions are drawn `draws` times and averaged,
since a 1% draw of a scarce set is a handful of images, and each draw is stratified: every label
with both positives and negatives in the train split gets at least one of each in every draw (a
draw grows past the fraction when the labels need more images than that), so no label's head is
left without a positive to learn from. Draws are deterministic by seed.

Besides the test AUC per label (mean over draws), the probe returns each test image's decision
score per label (mean over the draws that fit a head): what the report's bootstrap resamples.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

C_GRID = (0.01, 0.1, 1.0)


@dataclass
class ProbeResult:
    auc: dict[str, dict[str, float | None]]  # {"1%": {label: test AUC (mean over draws) or None}}
    scores: dict[str, dict[str, np.ndarray]]  # {"1%": {label: (N_test,) decision score, mean over draws}}


def _fit(x_tr: np.ndarray, y_tr: np.ndarray, C: float) -> LogisticRegression | None:
    if len(np.unique(y_tr)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=C, max_iter=1000).fit(x_tr, y_tr)


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None


def stratified_subsets(train_y: dict[str, np.ndarray], labels: list[str], size: int, draws: int,
                       rng: np.random.Generator) -> list[np.ndarray]:
    """`draws` sorted index sets into the train split, each of `size` images or more: first one
    positive and one negative of every label that has both (labels in order, picked at random among
    those not yet covered), then random images up to `size`."""
    n = len(next(iter(train_y.values()))) if train_y else 0
    ys = [np.asarray(train_y[label]).astype(bool) for label in labels]
    subsets = []
    for _ in range(draws):
        chosen = np.zeros(n, dtype=bool)
        for y in ys:
            for side in (y, ~y):
                if side.any() and not (chosen & side).any():
                    chosen[rng.choice(np.flatnonzero(side))] = True
        rest = np.flatnonzero(~chosen)
        extra = max(0, min(size, n) - int(chosen.sum()))
        chosen[rng.choice(rest, size=extra, replace=False)] = True
        subsets.append(np.flatnonzero(chosen))
    return subsets


def linear_probe(train_x: np.ndarray, train_y: dict[str, np.ndarray], valid_x: np.ndarray,
                 valid_y: dict[str, np.ndarray], test_x: np.ndarray, test_y: dict[str, np.ndarray],
                 labels: list[str], fractions: list[float], seed: int, draws: int = 5) -> ProbeResult:
    """Test AUCs and decision scores per train fraction and label."""
    scaler = StandardScaler().fit(train_x)
    tr, va, te = scaler.transform(train_x), scaler.transform(valid_x), scaler.transform(test_x)
    rng = np.random.default_rng(seed)
    aucs_out: dict[str, dict[str, float | None]] = {}
    scores_out: dict[str, dict[str, np.ndarray]] = {}
    for frac in fractions:
        key = f"{frac * 100:g}%"
        if frac >= 1.0:
            subsets = [np.arange(len(tr))]
        else:
            subsets = stratified_subsets(train_y, labels, max(2, int(round(frac * len(tr)))), draws, rng)
        aucs_out[key], scores_out[key] = {}, {}
        for label in labels:
            ytr, yva, yte = (np.asarray(d[label]).astype(int) for d in (train_y, valid_y, test_y))
            aucs, scores = [], []
            for idx in subsets:
                # Choose C on the valid split only.
                valid_auc = {}
                for C in C_GRID:
                    clf = _fit(tr[idx], ytr[idx], C)
                    if clf is not None and (a := _auc(yva, clf.decision_function(va))) is not None:
                        valid_auc[C] = (a, clf)
                if not valid_auc:
                    continue
                best = valid_auc[max(valid_auc, key=lambda C: valid_auc[C][0])][1]
                score = best.decision_function(te)
                auc = _auc(yte, score)
                if auc is not None:
                    aucs.append(auc)
                    scores.append(score)
            aucs_out[key][label] = float(np.mean(aucs)) if aucs else None
            scores_out[key][label] = np.mean(scores, axis=0) if scores else np.full(len(te), np.nan)
    return ProbeResult(aucs_out, scores_out)
