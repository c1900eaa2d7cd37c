"""Review decisions (`review/decisions.csv`): the ones that apply to these candidates, and the stale ones."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from pairaug.data.decisions import read_decisions

log = logging.getLogger(__package__)


def review_decisions(cands: pd.DataFrame, path: Path) -> tuple[pd.Series, dict]:
    """The decisions of `path` that apply (pair id → verdict), and what the metrics say about them.

    A decision naming a pair that is not a candidate is an error (InputError naming its line); one whose
    image sha256 is not the candidate's is stale: left out, listed and logged."""
    decisions = read_decisions(path, known_pairs=set(cands["pair_id"]))
    current = cands.set_index("pair_id")["image_sha256"]
    stale = decisions["image_sha256"].to_numpy() != current.reindex(decisions["pair_id"]).to_numpy()
    live = decisions[~stale]
    info: dict = {"file": str(path), "decisions": len(decisions),
                  "applied": {v: int((live["decision"] == v).sum()) for v in ("accept", "reject", "flag")},
                  "stale": [{"pair_id": r.pair_id, "line": int(r.line), "decision": r.decision}
                            for r in decisions[stale].itertuples()]}
    if info["stale"]:
        log.warning("prune: %d stale review decision(s) ignored, their image changed since the review: %s",
                    len(info["stale"]), ", ".join(f"{path} line {d['line']} ({d['decision']} {d['pair_id']})"
                                                  for d in info["stale"]))
    if len(live):
        log.info("prune: review decisions applied from %s: %s", path,
                 ", ".join(f"{n} {v}" for v, n in info["applied"].items()))
    return live.set_index("pair_id")["decision"], info
