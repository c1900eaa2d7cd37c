"""prune's parameters (`params.yaml` section `prune`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from pairaug.params import Cosine, Params, Positive, Share

INTRA_RANKS: tuple[str, ...] = ("scores", "change")


@dataclass
class ReviewConfig(Params):
    accepted_override: bool = False  # true: a pair accepted in review is kept whatever its scores


@dataclass
class PruneConfig(Params):
    inter_tau: Annotated[float, Cosine] | None = None  # a fixed S_a threshold; null: calibrated (inter_tau_quantile)
    inter_tau_quantile: Annotated[float, Share] = 0.9  # τ = this quantile of S_a over mismatched real valid pairs
    intra_scale: Annotated[float, Positive] = 1.0  # s in S_k > μ_k / s − λ
    intra_lambda: Annotated[float, Field(allow_inf_nan=False)] = 0.003  # λ in S_k > μ_k / s − λ
    # of a report's candidates that pass, keep this many (the best by intra_rank)
    intra_per_report: Annotated[int, Positive] = 1
    intra_rank: Literal["scores", "change"] = "scores"  # scores: S1 + S2 + S3 (PairAug); change: change_read, then S1 + S2 + S3
    # keep an intra candidate only if change_read >= this; null: off
    intra_min_change_read: Annotated[float, Share] | None = None
    batch_size: Annotated[int, Positive] = 512  # images / texts per scorer call
    review: ReviewConfig = field(default_factory=ReviewConfig)  # how review/decisions.csv is applied
