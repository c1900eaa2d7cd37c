"""Each candidate's verdict: its scores against their thresholds, change_read, review, and the per-report
ranking of intra candidates → `kept`, `reason`, `review`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pairaug.models.scorer import Scorer
from pairaug.prune.columns import SCORES, THRESHOLDS
from pairaug.prune.config import PruneConfig
from pairaug.prune.scores import alignment_scores, encode_unique, intra_scores, intra_thresholds


def score_candidates(cands: pd.DataFrame, scorer: Scorer, cfg: PruneConfig, tau: float,
                     progress: bool = True, review: pd.Series | None = None) -> pd.DataFrame:
    """Add scores, thresholds, `kept`, `reason` and `review` to the candidates (see the module docstring);
    `review`: pair id → the review verdict to apply (from `review_decisions`)."""
    df = cands.copy()
    intra = (df["branch"] == "intra").to_numpy()
    images = df["image_abs"].tolist() + df.loc[intra, "real_image"].tolist()
    texts = df["report"].tolist() + df.loc[intra, "source_report"].tolist()
    img_ix, img, txt_ix, txt = encode_unique(scorer, images, texts, cfg.batch_size, progress)

    def emb(table: np.ndarray, index: dict[str, int], keys: pd.Series) -> np.ndarray:
        return table[[index[k] for k in keys]] if len(keys) else np.zeros((0, table.shape[1]), table.dtype)

    for col in (*SCORES, *THRESHOLDS):
        df[col] = np.nan
    align = ~intra
    sub = df[align]
    df.loc[align, "s_a"] = alignment_scores(emb(img, img_ix, sub["image_abs"]), emb(txt, txt_ix, sub["report"]))
    df.loc[align, "tau"] = tau
    sub = df[intra]
    s1, s2, s3 = intra_scores(emb(img, img_ix, sub["image_abs"]), emb(txt, txt_ix, sub["report"]),
                              emb(img, img_ix, sub["real_image"]), emb(txt, txt_ix, sub["source_report"]))
    thr = intra_thresholds(s1, s2, s3, cfg.intra_scale, cfg.intra_lambda)
    for k, (name, values) in enumerate((("s1", s1), ("s2", s2), ("s3", s3))):
        df.loc[intra, name] = values
        df.loc[intra, f"thr_{name}"] = thr[k]
    kept = np.ones(len(df), dtype=bool)
    reasons: list[list[str]] = [[] for _ in range(len(df))]
    for score, threshold in zip(SCORES, THRESHOLDS):
        has = df[score].notna().to_numpy()
        below = has & ~(df[score].to_numpy() > df[threshold].to_numpy())
        kept &= ~below
        for i in np.flatnonzero(below):
            reasons[i].append(f"{score} {df[score].iat[i]:.4f} <= {threshold} {df[threshold].iat[i]:.4f}")
    if "change_read" not in df.columns:
        df["change_read"] = np.nan
    if cfg.intra_min_change_read is not None:
        read = df["change_read"].to_numpy(dtype=float)
        low = intra & ~(read >= cfg.intra_min_change_read)  # NaN: no finding the probe reads changed
        kept &= ~low
        for i in np.flatnonzero(low):
            reasons[i].append("change_read n/a: no changed finding the probe reads" if np.isnan(read[i]) else
                              f"change_read {read[i]:.2f} < intra_min_change_read {cfg.intra_min_change_read}")
    verdict = (df["pair_id"].map(review) if review is not None else pd.Series(np.nan, index=df.index))
    verdict = verdict.fillna("").astype(str).to_numpy()
    rejected = verdict == "reject"
    forced = (verdict == "accept") & cfg.review.accepted_override
    # A rejected intra candidate does not outrank the others of its report: the next best takes its place.
    outranked = _outranked(df, kept & ~rejected, cfg.intra_per_report, cfg.intra_rank)
    for i in np.flatnonzero(outranked):
        reasons[i].append(f"outranked: {cfg.intra_per_report} better candidate(s) of its report passed")
    by_scores = kept & ~outranked & ~rejected
    for i in np.flatnonzero(rejected):
        reasons[i].append("rejected in review")
    df["kept"] = by_scores | forced
    df["reason"] = ["kept" if k and not r else f"kept: accepted in review over {'; '.join(r)}" if k
                    else "; ".join(r) for k, r in zip(df["kept"], reasons)]
    df["review"] = verdict
    return df


def _outranked(df: pd.DataFrame, passed: np.ndarray, per_report: int, rank_by: str = "scores") -> np.ndarray:
    """Intra candidates that passed but are not among the `per_report` best of their report: by S1 + S2 + S3,
    or (rank_by "change") by change_read first."""
    out = np.zeros(len(df), dtype=bool)
    rows = np.flatnonzero(passed & (df["branch"] == "intra").to_numpy())
    if not len(rows):
        return out
    sub = df.iloc[rows]
    read = sub["change_read"].fillna(-1.0) if rank_by == "change" else 0.0
    rank = (sub.assign(_read=read, _total=sub["s1"] + sub["s2"] + sub["s3"])
            .sort_values(["source_pair_id", "report", "_read", "_total", "pair_id"],
                         ascending=[True, True, False, False, True])
            .groupby(["source_pair_id", "report"], sort=False).cumcount())
    out[rows] = (rank.reindex(sub.index) >= per_report).to_numpy()
    return out
