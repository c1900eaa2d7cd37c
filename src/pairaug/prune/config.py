"""prune's parameters (`params.yaml` section `prune`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pairaug.errors import ParamError
from pairaug.params import in_range, positive

INTRA_RANKS: tuple[str, ...] = ("scores", "change")


@dataclass
class ReviewConfig:
    accepted_override: bool = False  # true: a pair accepted in review is kept whatever its scores


@dataclass
class PruneConfig:
    inter_tau: float | None = None  # a fixed S_a threshold; null: calibrated (inter_tau_quantile)
    inter_tau_quantile: float = 0.9  # τ = this quantile of S_a over mismatched real valid pairs
    intra_scale: float = 1.0  # s in S_k > μ_k / s − λ
    intra_lambda: float = 0.003  # λ in S_k > μ_k / s − λ
    intra_per_report: int = 1  # of a report's candidates that pass, keep this many (the best by intra_rank)
    intra_rank: str = "scores"  # scores: S1 + S2 + S3 (PairAug); change: change_read, then S1 + S2 + S3
    intra_min_change_read: float | None = None  # keep an intra candidate only if change_read >= this; null: off
    batch_size: int = 512  # images / texts per scorer call
    review: ReviewConfig = field(default_factory=ReviewConfig)  # how review/decisions.csv is applied

    def validate(self, prefix: str) -> None:
        if self.inter_tau is not None:
            in_range(prefix, "inter_tau", self.inter_tau, -1.0, 1.0)
        in_range(prefix, "inter_tau_quantile", self.inter_tau_quantile, 0.0, 1.0)
        positive(prefix, intra_scale=self.intra_scale, batch_size=self.batch_size,
                 intra_per_report=self.intra_per_report)
        if self.intra_rank not in INTRA_RANKS:
            raise ParamError(f"{prefix}.intra_rank", f"must be one of {', '.join(INTRA_RANKS)}, got {self.intra_rank!r}")
        if self.intra_min_change_read is not None:
            in_range(prefix, "intra_min_change_read", self.intra_min_change_read, 0.0, 1.0)
        if not np.isfinite(self.intra_lambda):
            raise ParamError(f"{prefix}.intra_lambda", f"must be a finite number, got {self.intra_lambda!r}")
