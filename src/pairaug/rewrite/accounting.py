"""The rewrite's accounting: the labels of the new reports (memoised), per-task counts, tokens and cost,
how the labels changed, the retention check of the rules backend, and metrics/rewrite.json."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pairaug.data import labeler
from pairaug.data.labeler import label_report
from pairaug.data.schema import LABELS
from pairaug.errors import PairaugError
from pairaug.hashing import stable_hash
from pairaug.rewrite.cache import ResponseCache
from pairaug.rewrite.config import RewriteConfig
from pairaug.rewrite.prompts import Prompt
from pairaug.rewrite.retention import Retention, summarise

_STATUS_NAME = {1: "pos", 0: "neg", -1: "unc", None: "none"}

_LABELER_SHA: str | None = None


def labeler_version() -> str:
    """A hash of the labeler's source: memoised labels are reused only while the labeler is unchanged."""
    global _LABELER_SHA
    if _LABELER_SHA is None:
        _LABELER_SHA = hashlib.sha256(Path(labeler.__file__).read_bytes()).hexdigest()[:12]
    return _LABELER_SHA


def label_many(texts: list[str], cache: ResponseCache | None) -> dict[str, dict[str, int | None]]:
    """Labeler output for each distinct text, memoised in the cache when there is one."""
    distinct = list(dict.fromkeys(texts))
    if cache is None:
        return {t: label_report(t) for t in distinct}
    version = labeler_version()
    keys = {t: stable_hash("labels", version, t, length=32) for t in distinct}
    known = cache.get_labels(keys.values())
    out: dict[str, dict[str, int | None]] = {}
    fresh: dict[str, dict[str, int | None]] = {}
    for t, k in keys.items():
        if k in known:
            out[t] = known[k]
        else:
            out[t] = fresh[k] = label_report(t)
    cache.put_labels(fresh)
    return out


@dataclass
class TaskStats:
    task: str
    rows: int = 0
    ok: int = 0
    failed: int = 0
    skipped_short: int = 0
    skipped_long: int = 0  # rules backend: what the rewrite must keep does not fit in max_words
    unchanged: int = 0  # answers identical to their source report (case and spacing aside)
    truncated: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    deduplicated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasons: Counter = field(default_factory=Counter)
    long_reasons: Counter = field(default_factory=Counter)
    labels: dict = field(default_factory=dict)
    retention: list[tuple[str, Retention]] = field(default_factory=list)  # per ok row, judged sentence by sentence

    def cost(self, cfg: RewriteConfig) -> float:
        return (self.prompt_tokens * cfg.price.prompt_per_1k + self.completion_tokens * cfg.price.completion_per_1k) / 1000

    def as_dict(self, cfg: RewriteConfig) -> dict:
        out = {
            "rows": self.rows, "ok": self.ok, "failed": self.failed, "skipped_short": self.skipped_short,
            "skipped_long": self.skipped_long, "skipped_long_reasons": dict(self.long_reasons.most_common(5)),
            "unchanged": self.unchanged,
            "truncated": self.truncated, "requests": self.requests, "retries": self.retries,
            "cache_hits": self.cache_hits, "deduplicated": self.deduplicated,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "tokens": self.prompt_tokens + self.completion_tokens, "estimated_cost_usd": round(self.cost(cfg), 6),
            "failure_reasons": dict(self.reasons.most_common(5)), "labels": self.labels,
        }
        summary = summarise(self.retention)
        out["intent_match_share"] = summary["intent_share"]
        out["retention"] = summary
        return out


def _share(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


def label_change_stats(source: list[dict], new: list[dict]) -> dict:
    """How the labels of the new reports differ from their sources' (labeler on both)."""
    n = len(new)
    changed = kept = total_changes = 0
    per_label: Counter = Counter()
    transitions: Counter = Counter()
    for src, dst in zip(source, new):
        diff = [lab for lab in LABELS if lab != "No Finding" and src[lab] != dst[lab]]
        total_changes += len(diff)
        if diff or src["No Finding"] != dst["No Finding"]:
            changed += 1
        else:
            kept += 1
        for lab in diff:
            per_label[lab] += 1
            transitions[f"{_STATUS_NAME[src[lab]]}->{_STATUS_NAME[dst[lab]]}"] += 1
    return {
        "compared": n, "changed_share": _share(changed, n), "kept_share": _share(kept, n),
        "mean_labels_changed": round(total_changes / n, 4) if n else 0.0,
        "per_label_changes": dict(sorted(per_label.items())), "transitions": dict(sorted(transitions.items())),
    }


def check_retention(cfg: RewriteConfig, task_stats: dict[str, TaskStats]) -> None:
    """Fail when the rules rewriter kept less of the source reports than `rewrite.min_retention`."""
    low = []
    for task, s in task_stats.items():
        scores = [(pid, r.retention) for pid, r in s.retention if r.retention is not None]
        if not scores:
            continue
        mean = sum(x for _, x in scores) / len(scores)
        if mean < cfg.min_retention:
            worst = sorted((x, pid) for pid, x in scores if x < cfg.min_retention)
            names = ", ".join(f"{pid} ({x:.2f})" for x, pid in worst[:5]) + (f" and {len(worst) - 5} more"
                                                                           if len(worst) > 5 else "")
            low.append(f"{task}: mean retention {mean:.3f} < rewrite.min_retention = {cfg.min_retention}; "
                       f"lowest reports: {names}")
    if low:
        raise PairaugError(
            "rewrite: the rules backend kept too little of the source reports (" + "; ".join(low) + "). It edits "
            "the sentences it can parse and keeps the rest; these reports are worded in ways it cannot edit "
            "cleanly. Real data deserves an LLM backend (rewrite.backend: openai or azure, see docs/rewrite.md, "
            "'Which backend'); lower rewrite.min_retention only to accept these rewrites as they are.")


def build_metrics(cfg: RewriteConfig, backend: object, task_stats: dict[str, TaskStats],
                  prompts: dict[str, Prompt] | None = None) -> dict:
    tasks = {t: s.as_dict(cfg) for t, s in task_stats.items()}
    total = lambda name: sum(t[name] for t in tasks.values())  # noqa: E731
    return {
        "backend": getattr(backend, "name", cfg.backend),
        "model": getattr(backend, "model", ""),
        "rows": total("rows"),
        "ok": total("ok"),
        "failures": total("failed"),
        "skipped_short": total("skipped_short"),
        "skipped_long": total("skipped_long"),
        "unchanged": total("unchanged"),
        "truncated": total("truncated"),
        "requests": total("requests"),
        "retries": total("retries"),
        "cache_hits": total("cache_hits"),
        "prompt_tokens": total("prompt_tokens"),
        "completion_tokens": total("completion_tokens"),
        "tokens": total("tokens"),
        "estimated_cost_usd": round(sum(s.cost(cfg) for s in task_stats.values()), 6),
        "price_per_1k": {"prompt": cfg.price.prompt_per_1k, "completion": cfg.price.completion_per_1k},
        "tasks": tasks,
        # each task's instruction: its hash, and its version in MLflow's Prompt Registry (null: tracking off)
        "prompts": {t: {"sha": p.sha, "uri": p.uri} for t, p in (prompts or {}).items()},
    }
