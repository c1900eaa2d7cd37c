"""Zero-shot ROC curves grouped by label, one line per mix: `metrics/roc/<label>.json`, one DVC plot each.

A mix's curve is the vertical average of its seeds' curves: each seed's TPR interpolated at a fixed FPR
grid, then the mean over seeds. Rows are {mix, fpr, tpr} (long format), drawn by the template
`.dvc/plots/by_mix.json`: colour = mix (whatever mixes params.yaml has), dash = revision, so `dvc plots
diff <rev>` overlays the same label's curves of two experiments.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from pairaug.data.schema import COMPETITION_LABELS
from pairaug.io import atomic_path, write_json
from pairaug.measurement.scores import ZEROSHOT_KIND

FPR_GRID = np.linspace(0.0, 1.0, 51)


def label_file(label: str) -> str:
    """'Pleural Effusion' → 'pleural_effusion.json'."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") + ".json"


def seed_averaged_tpr(part: pd.DataFrame) -> np.ndarray | None:
    """One mix's zero-shot scores for one label (all seeds) → mean TPR at FPR_GRID; None if any seed's
    targets are all one class."""
    curves = []
    for _, seed in part.groupby("seed", sort=True):
        y = seed["y"].to_numpy().astype(int)
        if len(np.unique(y)) < 2:
            return None
        fpr, tpr, _ = roc_curve(y, seed["score"].to_numpy())
        curve = np.interp(FPR_GRID, fpr, tpr)
        curve[0] = 0.0
        curves.append(curve)
    return np.mean(curves, axis=0) if curves else None


def roc_by_label(scores: dict[str, pd.DataFrame], labels: tuple[str, ...] = COMPETITION_LABELS) -> dict:
    """{label: rows} for the labels some mix scores zero-shot (each with the mixes that do); rows as in the
    module docstring."""
    out = {}
    for label in labels:
        tprs = {}
        for mix, df in scores.items():
            part = df[(df["kind"] == ZEROSHOT_KIND) & (df["label"] == label)]
            tpr = seed_averaged_tpr(part) if len(part) else None
            if tpr is not None:
                tprs[mix] = tpr
        if tprs:
            out[label] = [{"mix": mix, "fpr": round(float(f), 4), "tpr": round(float(t), 5)}
                          for mix, tpr in tprs.items() for f, t in zip(FPR_GRID, tpr)]
    return out


def write_roc_by_label(scores: dict[str, pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write the folder anew (atomically): one JSON per label."""
    curves = roc_by_label(scores)
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for label, rows in curves.items():
            write_json(tmp / label_file(label), rows)
    return [out_dir / label_file(label) for label in curves]
