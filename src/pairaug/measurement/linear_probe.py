"""Linear probing: a frozen image encoder, a new logistic-regression head per label.

Trained on 1%, 10% and 100% of the labelled train split (the small fractions are drawn several
times and averaged, since a 1% draw of a scarce set is a handful of images); the regularisation
strength is chosen on the valid split, never the test split.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

C_GRID = (0.01, 0.1, 1.0)


def _fit_auc(x_tr, y_tr, x_ev, y_ev, C: float) -> float | None:
    if len(np.unique(y_tr)) < 2 or len(np.unique(y_ev)) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(C=C, max_iter=1000).fit(x_tr, y_tr)
    return float(roc_auc_score(y_ev, clf.decision_function(x_ev)))


def linear_probe(train_x: np.ndarray, train_y: dict[str, np.ndarray], valid_x: np.ndarray,
                 valid_y: dict[str, np.ndarray], test_x: np.ndarray, test_y: dict[str, np.ndarray],
                 labels: list[str], fractions: list[float], seed: int, draws: int = 5) -> dict[str, dict]:
    """{"1%": {label: AUC or None, ...}, ...}: test AUC per label and train fraction."""
    scaler = StandardScaler().fit(train_x)
    tr, va, te = scaler.transform(train_x), scaler.transform(valid_x), scaler.transform(test_x)
    rng = np.random.default_rng(seed)
    out: dict[str, dict] = {}
    for frac in fractions:
        n = max(2, int(round(frac * len(tr))))
        repeats = 1 if frac >= 1.0 else draws
        subsets = [np.arange(len(tr)) if frac >= 1.0 else rng.choice(len(tr), size=n, replace=False)
                   for _ in range(repeats)]
        per_label: dict[str, float | None] = {}
        for label in labels:
            ytr, yva, yte = (np.asarray(d[label]).astype(int) for d in (train_y, valid_y, test_y))
            aucs = []
            for idx in subsets:
                # Choose C on the valid split only.
                valid_auc = {C: _fit_auc(tr[idx], ytr[idx], va, yva, C) for C in C_GRID}
                scored = {C: a for C, a in valid_auc.items() if a is not None}
                if not scored:
                    continue
                best_c = max(scored, key=scored.get)
                auc = _fit_auc(tr[idx], ytr[idx], te, yte, best_c)
                if auc is not None:
                    aucs.append(auc)
            per_label[label] = float(np.mean(aucs)) if aucs else None
        out[f"{frac * 100:g}%"] = per_label
    return out
