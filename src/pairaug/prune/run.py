"""prune end to end: candidates → τ → scores and verdicts → `candidates.parquet`, `pairs.parquet`, metrics."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pairaug.io import atomic_path, write_parquet
from pairaug.models.scorer import Scorer
from pairaug.prune.candidates import Sources, load_candidates
from pairaug.prune.columns import BRANCHES
from pairaug.prune.config import PruneConfig
from pairaug.prune.decide import score_candidates
from pairaug.prune.review import review_decisions
from pairaug.prune.scores import change_reads
from pairaug.prune.summary import finalize, summarize
from pairaug.prune.tau import replicate_tau, tau_summary

log = logging.getLogger(__package__)


def prune(cfg: PruneConfig, scorer: Scorer, out_dir: str | Path, sources: Sources,
          progress: bool = True, seed: int = 0, replicates: Sequence[int] = (0,)) -> tuple[pd.DataFrame, dict]:
    """Write `out_dir/{candidates,pairs}.parquet` atomically; return (candidates, metrics). Each replicate
    is pruned on its own: its τ draw (the derangement), its intra means μ_k."""
    out_dir = Path(out_dir)
    cands = load_candidates(sources, replicates)
    review, review_info = review_decisions(cands, sources.decisions)  # a broken decisions file fails before scoring
    taus = {rep: replicate_tau(cfg, scorer, sources, seed, rep) for rep in replicates}
    log.info("prune: τ = %s (%s)", ", ".join(f"{t['tau']:.4f}" for t in taus.values()),
             next(iter(taus.values()))["source"])
    log.info("prune: %d candidates (%s)", len(cands), ", ".join(
        f"{b} {int((cands['branch'] == b).sum())}" for b in BRANCHES))
    if cfg.intra_rank == "change" or cfg.intra_min_change_read is not None:
        cands["change_read"] = change_reads(cands, sources.prepared, sources.pool)
    scored = pd.concat([score_candidates(cands[cands["replicate"] == rep].reset_index(drop=True), scorer, cfg,
                                         taus[rep]["tau"], progress, review) for rep in replicates],
                       ignore_index=True)
    candidates = finalize(scored, out_dir)
    pairs = candidates[candidates["kept"]].drop(columns=["kept", "reason"])
    log.info("prune: kept %s", ", ".join(f"{b} {int(candidates.loc[candidates['branch'] == b, 'kept'].sum())}/"
                                          f"{int((candidates['branch'] == b).sum())}" for b in BRANCHES))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        write_parquet(candidates, tmp / "candidates.parquet")
        write_parquet(pairs, tmp / "pairs.parquet")
    return candidates, summarize(candidates, cfg, tau_summary(taus), review_info)
