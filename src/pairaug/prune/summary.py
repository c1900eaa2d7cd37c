"""prune's outputs: the candidates in the output schema, and metrics/prune.json's summary."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.prune.candidates import abs_path
from pairaug.prune.columns import (
    ALIGNMENT_BRANCHES,
    BRANCHES,
    CANDIDATE_COLUMNS,
    SCORES,
    TEXT_COLUMNS,
    THRESHOLDS,
)
from pairaug.prune.config import PruneConfig


def finalize(scored: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """Candidates in the output schema: image paths relative to `out_dir`, fixed column order and dtypes."""
    df = scored.copy()
    if "change_read" not in df.columns:  # scored without the change reader
        df["change_read"] = np.nan
    base = abs_path(out_dir)
    df["image"] = [Path(os.path.relpath(p, base)).as_posix() for p in df["image_abs"]]
    df = df.sort_values(["branch", "replicate", "pair_id"], key=_branch_order).reset_index(drop=True)
    df = df[list(CANDIDATE_COLUMNS)]
    for col in (*TEXT_COLUMNS, "reason", "review"):
        df[col] = df[col].astype(str)
    for col in (*SCORES, *THRESHOLDS, "change_read"):
        df[col] = df[col].astype("float64")
    df["replicate"] = df["replicate"].astype("int64")
    df["kept"] = df["kept"].astype(bool)
    return df


def _branch_order(col: pd.Series) -> pd.Series:
    return col.map(BRANCHES.index) if col.name == "branch" else col


def summarize(candidates: pd.DataFrame, cfg: PruneConfig, tau: dict, review: dict | None = None) -> dict:
    """metrics/prune.json: kept / total per branch, score means, thresholds (τ with how it was set), and
    the review decisions applied (stale ones listed)."""
    out: dict = {"branches": {}, "tau": tau,
                 "params": {"inter_tau": cfg.inter_tau, "inter_tau_quantile": cfg.inter_tau_quantile,
                            "intra_scale": cfg.intra_scale, "intra_lambda": cfg.intra_lambda,
                            "intra_per_report": cfg.intra_per_report, "intra_rank": cfg.intra_rank,
                            "intra_min_change_read": cfg.intra_min_change_read,
                            "review": {"accepted_override": cfg.review.accepted_override}}}
    for branch in BRANCHES:
        sub = candidates[candidates["branch"] == branch]
        row: dict = {"total": len(sub), "kept": int(sub["kept"].sum()),
                     "kept_fraction": round(float(sub["kept"].mean()), 4) if len(sub) else None,
                     "rejected_in_review": int((sub["review"] == "reject").sum()),
                     "kept_per_replicate": {str(r): int(k) for r, k in sub.groupby("replicate")["kept"].sum().items()}}
        scores = ("s_a",) if branch in ALIGNMENT_BRANCHES else ("s1", "s2", "s3", "change_read")
        for score in scores:
            row[f"{score}_mean"] = _round(sub[score].mean())
            row[f"{score}_kept_mean"] = _round(sub.loc[sub["kept"], score].mean())
        if branch in ALIGNMENT_BRANCHES:
            row["tau"] = _round(tau["tau"])
        else:
            for score in scores[:3]:
                row[f"thr_{score}"] = _round(sub[f"thr_{score}"].mean()) if len(sub) else None  # over replicates
        out["branches"][branch] = row
    out["total"] = len(candidates)
    out["kept"] = int(candidates["kept"].sum())
    out["review"] = {**(review or {"decisions": 0, "applied": {}, "stale": []}),
                     "kept_by_override": int((candidates["kept"] & candidates["reason"].str.startswith("kept: ")).sum())}
    return out


def _round(x: float) -> float | None:
    return None if pd.isna(x) else round(float(x), 4)
