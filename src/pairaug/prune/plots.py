"""metrics/prune_scores.png: the score histograms with their thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.io import atomic_path
from pairaug.prune.columns import ALIGNMENT_BRANCHES


def plot_scores(candidates: pd.DataFrame, path: str | Path) -> None:
    """Score histograms with the thresholds marked: S_a per alignment branch, then S1, S2, S3 of intra."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    bins = np.linspace(-1, 1, 81)
    ax = axes[0]
    for branch in ALIGNMENT_BRANCHES:
        sub = candidates[candidates["branch"] == branch]
        if len(sub):
            ax.hist(sub["s_a"], bins=bins, histtype="step", label=f"{branch} ({int(sub['kept'].sum())}/{len(sub)} kept)")
    tau = candidates["tau"].dropna()
    if len(tau):
        ax.axvline(tau.mean(), color="k", ls="--", label=f"τ = {tau.mean():.3f}")
    ax.set_title("S_a = cos(image, report)")
    ax.legend(fontsize=7, loc="upper left")
    intra = candidates[candidates["branch"] == "intra"]
    titles = {"s1": "intra S1 = cos(x', y')", "s2": "intra S2 = cos(x', x)", "s3": "intra S3 = cos(x'−x, y'−y)"}
    for ax, score in zip(axes[1:], ("s1", "s2", "s3")):
        if len(intra):
            ax.hist(intra[score], bins=bins, color="tab:purple", alpha=0.7)
            thr = float(intra[f"thr_{score}"].mean())
            ax.axvline(thr, color="k", ls="--", label=f"μ/s − λ = {thr:.3f}")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(titles[score] + (f" ({int(intra['kept'].sum())}/{len(intra)} kept)" if score == "s1" else ""))
    for ax in axes:
        ax.set_xlabel("cosine")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
