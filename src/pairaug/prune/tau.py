"""τ, the S_a threshold: fixed by `prune.inter_tau`, or calibrated per replicate on mismatched real pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.hashing import seed_from
from pairaug.models.scorer import Scorer
from pairaug.prune.candidates import Sources, abs_path
from pairaug.prune.config import PruneConfig
from pairaug.prune.scores import alignment_scores


def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point: one cycle through a random order (n >= 2)."""
    order = np.random.default_rng(seed).permutation(n)
    other = np.empty(n, dtype=int)
    other[order] = np.roll(order, 1)
    return other


def calibrate_tau(scorer: Scorer, images: list[str], reports: list[str], quantile: float, seed: int,
                  batch_size: int = 512, source: str | Path | None = None) -> dict:
    """τ from the scorer's own scale: the `quantile` of cos(f_img(x_i), f_txt(y_π(i))) over real pairs with
    a derangement π (every film meets another film's report), next to the matched pairs' figures."""
    if len(images) < 2:
        raise InputError("prune: at least 2 real valid pairs are needed to calibrate inter_tau "
                         "(or set prune.inter_tau)", file=source, field="split")
    other = derangement(len(images), seed)
    img = np.concatenate([scorer.encode_images(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])
    txt = np.concatenate([scorer.encode_texts(reports[s:s + batch_size]) for s in range(0, len(reports), batch_size)])
    matched, mismatched = alignment_scores(img, txt), alignment_scores(img, txt[other])
    tau = float(np.quantile(mismatched, quantile))
    return {"tau": tau, "quantile": quantile, "pairs": len(images), "mismatched_mean": float(mismatched.mean()),
            "matched_mean": float(matched.mean()), "matched_above_tau": float((matched > tau).mean()),
            "source": "valid split, each film with another film's report"}


def replicate_tau(cfg: PruneConfig, scorer: Scorer, sources: Sources, seed: int, replicate: int) -> dict:
    """τ of one replicate: fixed by `prune.inter_tau`, or calibrated with the replicate's own derangement."""
    if cfg.inter_tau is not None:
        return {"tau": cfg.inter_tau, "source": "prune.inter_tau (fixed)"}
    real = read_pairs(sources.prepared)
    valid = real[real["split"] == "valid"]
    return calibrate_tau(scorer, [abs_path(sources.prepared.parent / p) for p in valid["image"]],
                         valid["report"].tolist(), cfg.inter_tau_quantile, seed_from("prune-tau", seed, replicate),
                         cfg.batch_size, sources.prepared)


def tau_summary(taus: dict[int, dict]) -> dict:
    """metrics/prune.json `tau`: the mean over replicates of every figure, and each replicate's own."""
    first = next(iter(taus.values()))
    mean = {k: float(np.mean([t[k] for t in taus.values()])) if isinstance(v, float) else v for k, v in first.items()}
    return {**mean, "per_replicate": {str(rep): t["tau"] for rep, t in taus.items()}}
