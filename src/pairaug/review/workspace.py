"""What the review app shows, read from a workspace's DVC outputs: every candidate prune scored
(data/pruned/candidates.parquet) with its source pair (data/prepared), the per-pair facts any later stage
added to the tables, and the decisions in review/decisions.csv. No web code here (tested on its own)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.data.decisions import read_decisions, record_decision
from pairaug.data.schema import LABELS, label_states, read_pairs
from pairaug.errors import InputError
from pairaug.layout import DECISIONS, INTRA_MANIFEST, INTRA_SYNTHETIC, PREPARED, PREPARED_DIR
from pairaug.layout import PRUNED_DIR as PRUNED
from pairaug.layout import VALIDATED_PAIRS as VALIDATED

SCORES = ("s_a", "s1", "s2", "s3")
THRESHOLDS = {"s_a": "tau", "s1": "thr_s1", "s2": "thr_s2", "s3": "thr_s3"}
# Columns the page shows in their own places; every other column of the pruned or validated tables is a
# per-pair fact and is listed as one, so facts a stage adds later appear without a change here.
SHOWN = {"pair_id", "branch", "source_pair_id", "report", "source_report", "image", "kept", "reason", "review",
         "image_sha256", *SCORES, *THRESHOLDS.values(), *LABELS}
STATE_NAMES = {1: "positive", -1: "uncertain", 0: "absent"}


@dataclass
class Filters:
    branch: str = ""
    status: str = ""  # kept | dropped | "" (both), as the last prune decided
    decision: str = ""  # accept | reject | flag | none | "" (any): the decision in review/decisions.csv
    label: str = ""  # the label is positive / uncertain in the new report, or changed from the source
    score: str = "s_a"
    min_score: float | None = None
    max_score: float | None = None


class Workspace:
    """The candidates of one workspace, loaded once; decisions are read from the file at each call."""

    def __init__(self, root: str | Path, decisions: str | Path | None = None):
        self.root = Path(root).resolve()
        self.decisions_path = Path(decisions) if decisions else self.root / DECISIONS
        path = self.root / PRUNED / "candidates.parquet"
        if not path.exists():
            raise InputError("no pruned candidates in this workspace (run `dvc repro prune`, or `dvc pull prune`)",
                             file=path)
        cands = pd.read_parquet(path)
        real = read_pairs(self.root / PREPARED).set_index("pair_id")
        cands["image_path"] = [_join(PRUNED, p) for p in cands["image"]]
        cands["source_image_path"] = [_join(PREPARED_DIR, p) for p in real["image"].reindex(cands["source_pair_id"])]
        cands["branch_source_path"] = None
        intra = self.root / INTRA_MANIFEST
        if intra.exists():
            m = pd.read_parquet(intra)
            if "source_image" in m.columns:
                src = dict(zip(m["pair_id"], m["source_image"]))
                cands["branch_source_path"] = [_join(INTRA_SYNTHETIC, src[p]) if p in src else None
                                               for p in cands["pair_id"]]
        # Labels: the new report's against the source's, as the quality checks read them.
        source_labels = real.reindex(cands["source_pair_id"])
        self.changes = {label: (label_states(source_labels[label]), label_states(cands[label])) for label in LABELS}
        facts = [c for c in cands.columns if c not in SHOWN and not c.endswith("_path")]
        validated = self.root / VALIDATED
        if validated.exists():
            v = pd.read_parquet(validated)
            extra = [c for c in v.columns if c not in cands.columns]
            if extra:
                cands = cands.merge(v[["pair_id", *extra]], on="pair_id", how="left", validate="one_to_one")
                facts += extra
        self.facts = facts
        self.cands = cands.reset_index(drop=True)
        self.index = {pid: i for i, pid in enumerate(self.cands["pair_id"])}
        self.branches = list(dict.fromkeys(self.cands["branch"]))

    # ------------------------------------------------------------------------------------ decisions

    def decisions(self) -> pd.DataFrame:
        """The decisions file, checked against this workspace's candidates, with `stale` per row."""
        d = read_decisions(self.decisions_path, known_pairs=self.index)
        current = self.cands["image_sha256"].to_numpy()[[self.index[p] for p in d["pair_id"]]] if len(d) else []
        return d.assign(stale=d["image_sha256"].to_numpy() != np.asarray(current, dtype=object))

    def decide(self, pair_id: str, decision: str | None, reviewer: str, note: str = "") -> dict | None:
        """Record a verdict on the image the candidate names (None withdraws it); written at once."""
        if pair_id not in self.index:
            raise InputError(f"unknown pair id {pair_id!r}", file=self.root / PRUNED / "candidates.parquet",
                             field="pair_id")
        sha = str(self.cands.at[self.index[pair_id], "image_sha256"])
        return record_decision(self.decisions_path, pair_id, sha, decision, reviewer, note, known_pairs=self.index)

    # ------------------------------------------------------------------------------------- browsing

    def select(self, f: Filters) -> pd.DataFrame:
        """The candidates matching the filters, in the table's order (branch, pair id)."""
        df = self.cands
        keep = np.ones(len(df), dtype=bool)
        if f.branch:
            keep &= (df["branch"] == f.branch).to_numpy()
        if f.status in ("kept", "dropped"):
            keep &= df["kept"].to_numpy() == (f.status == "kept")
        if f.decision:
            d = self.decisions()
            live = dict(zip(d.loc[~d["stale"], "pair_id"], d.loc[~d["stale"], "decision"]))
            verdict = df["pair_id"].map(live).fillna("none").to_numpy()
            keep &= verdict == f.decision
        if f.label in LABELS:
            before, after = self.changes[f.label]
            keep &= (after != 0) | (before != after)
        if f.score in SCORES and (f.min_score is not None or f.max_score is not None):
            s = df[f.score].to_numpy(dtype=float)
            ok = ~np.isnan(s)
            if f.min_score is not None:
                ok &= s >= f.min_score
            if f.max_score is not None:
                ok &= s <= f.max_score
            keep &= ok
        return df[keep]

    def card(self, row: pd.Series, decision: dict | None) -> dict:
        """One pair as the template shows it."""
        i = self.index[row["pair_id"]]
        labels = []
        for label in LABELS:
            before, after = int(self.changes[label][0][i]), int(self.changes[label][1][i])
            if before or after:
                labels.append({"name": label, "before": STATE_NAMES[before], "after": STATE_NAMES[after],
                               "changed": before != after})
        scores = [{"name": s, "value": float(row[s]), "threshold": float(row[THRESHOLDS[s]]),
                   "passes": bool(row[s] > row[THRESHOLDS[s]])} for s in SCORES if pd.notna(row[s])]
        return {"pair_id": row["pair_id"], "branch": row["branch"], "source_pair_id": row["source_pair_id"],
                "report": row["report"], "source_report": row["source_report"], "kept": bool(row["kept"]),
                "reason": row["reason"], "applied": row.get("review", "") or "", "sha": row["image_sha256"],
                "image": row["image_path"], "source_image": _text(row["source_image_path"]),
                "branch_source": _text(row["branch_source_path"]), "labels": labels, "scores": scores,
                "facts": [(name, _fact(row[name])) for name in self.facts], "decision": decision}

    def page(self, f: Filters, page: int, per_page: int) -> tuple[list[dict], int]:
        """The cards of one page and the number of matching pairs."""
        rows = self.select(f)
        d = self.decisions()
        by_pair = {r["pair_id"]: r for r in d.to_dict("records")}
        start = (max(page, 1) - 1) * per_page
        return [self.card(r, by_pair.get(r["pair_id"])) for _, r in rows.iloc[start:start + per_page].iterrows()], len(rows)

    def summary(self) -> dict:
        """Counts per branch: candidates, kept / dropped by the last prune, the decisions in the file (stale
        apart), and how many decisions the last prune has not applied yet (`dvc repro` applies them)."""
        d = self.decisions()
        live = d[~d["stale"]]
        verdict = self.cands["pair_id"].map(dict(zip(live["pair_id"], live["decision"]))).fillna("")
        stale = self.cands["pair_id"].isin(set(d.loc[d["stale"], "pair_id"]))
        applied = self.cands["review"].fillna("") if "review" in self.cands.columns else pd.Series("", index=verdict.index)
        rows = []
        for branch in [*self.branches, "all"]:
            m = (self.cands["branch"] == branch) if branch != "all" else pd.Series(True, index=self.cands.index)
            rows.append({"branch": branch, "candidates": int(m.sum()), "kept": int((m & self.cands["kept"]).sum()),
                         "dropped": int((m & ~self.cands["kept"]).sum()),
                         **{v: int((m & (verdict == v)).sum()) for v in ("accept", "reject", "flag")},
                         "stale": int((m & stale).sum()), "pending": int((m & (verdict != applied)).sum())})
        recent = live.assign(branch=[self.cands.at[self.index[p], "branch"] for p in live["pair_id"]])
        return {"rows": rows, "recent": recent.sort_values(["time", "pair_id"], ascending=[False, True]).head(100)
                .to_dict("records"), "stale": d[d["stale"]].to_dict("records")}


def _join(folder: str, rel: object) -> str | None:
    """A workspace-relative path of a table's relative image path (None when the table has none)."""
    if not isinstance(rel, str) or not rel:
        return None
    return Path(os.path.normpath(f"{folder}/{rel}")).as_posix()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None  # a join leaves NaN where a pair has no such image


def _fact(value: object) -> str:
    if value is None or (not isinstance(value, (list, np.ndarray)) and pd.isna(value)):
        return "—"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)
