"""What a rewrite kept and changed, judged sentence by sentence — not by the rewriter's own check.

The rules rewriter retries against the whole-report labeler; measuring it with that same call would
pass by construction. These figures label every sentence of the source and of the rewrite on its own
(`sentence_facts`) and compare sentence texts:

- `sentence_retention` (inter, intra): of the source sentences the task need not change — those that
  state none of the labels whose facts changed, and no "normal study" claim that a new finding
  overrules — the share found verbatim (whitespace aside) in the rewrite;
- `label_retention` (paraphrase): the share of the source's sentence-level facts (label, status)
  that the rewrite still states;
- `nonlabel_retention`: the share of findings outside the 14 labels (granuloma, emphysema, hernia,
  sternotomy, ...) that the rewrite still mentions;
- `intent`: inter — an edited sentence states a label present where the source had it absent or the
  reverse; intra — an edited sentence states a change (a status flip, another severity or side, or
  temporal language); paraphrase — every fact kept and the text reworded;
- `contradiction`: a sentence kept from the source and an edited one disagree (present vs absent,
  or a "normal study" claim next to a new finding).

A report's `retention` is the mean of the parts that apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pairaug.data.labeler import NEGATIVE, POSITIVE, UNCERTAIN, find_mentions, label_report
from pairaug.data.report_text import TEMPORAL, global_normal_scope, nonlabel_findings, normalise, split_report

_PRESENT = (POSITIVE, UNCERTAIN)


@dataclass(frozen=True)
class Retention:
    sentence_retention: float | None
    must_keep: int
    kept: int
    label_retention: float | None
    nonlabel_retention: float | None
    nonlabel_terms: int
    intent: bool
    contradiction: bool

    @property
    def retention(self) -> float | None:
        parts = [x for x in (self.sentence_retention, self.label_retention, self.nonlabel_retention) if x is not None]
        return sum(parts) / len(parts) if parts else None


def _sentences(report: str) -> list[str]:
    return [normalise(s) for sec in split_report(report) for s in sec.sentences]


def _facts(sentence: str) -> dict[str, int]:
    return {k: v for k, v in label_report(sentence).items() if v is not None and k != "No Finding"}


def _details(sentences: list[str]) -> dict[str, set[tuple]]:
    """label -> {(present?, severity, side)} over every mention of every sentence."""
    out: dict[str, set[tuple]] = {}
    for s in sentences:
        for m in find_mentions(s):
            out.setdefault(m.label, set()).add((m.status in _PRESENT, m.severity, m.side))
    return out


def compare(source: str, new: str, task: str) -> Retention:
    """How `new` (a rewrite of `source` for `task`) kept and changed the source, sentence by sentence."""
    src, dst = _sentences(source), _sentences(new)
    dst_set = set(dst)
    edited = [s for s in dst if s not in set(src)]
    kept_lines = [s for s in dst if s in set(src)]
    src_labels, dst_labels = label_report(source), label_report(new)
    d_src, d_dst = _details(src), _details(dst)
    touched = {k for k in set(d_src) | set(d_dst) if d_src.get(k) != d_dst.get(k)}
    newly_present = {k for k, v in dst_labels.items() if v in _PRESENT and src_labels.get(k) not in _PRESENT}

    sentence_retention = label_retention = None
    must_keep = kept = 0
    if task in ("inter", "intra"):
        for s in src:
            if set(_facts(s)) & touched or global_normal_scope(s) & newly_present:
                continue
            must_keep += 1
            kept += s in dst_set
        sentence_retention = kept / must_keep if must_keep else None
    src_facts = {(k, v) for s in src for k, v in _facts(s).items()}
    dst_facts = {(k, v) for s in dst for k, v in _facts(s).items()}
    if task == "paraphrase" and src_facts:
        label_retention = len(src_facts & dst_facts) / len(src_facts)
    terms = nonlabel_findings(source)
    nonlabel_retention = len(terms & nonlabel_findings(new)) / len(terms) if terms else None

    edited_facts = [_facts(s) for s in edited]
    if task == "inter":
        intent = any((v in _PRESENT) != (src_labels.get(k) in _PRESENT) for f in edited_facts for k, v in f.items()
                     if k != "Support Devices")
    elif task == "intra":
        intent = any(((v in _PRESENT) != (src_labels.get(k) in _PRESENT)) or k in touched
                     for f in edited_facts for k, v in f.items()) or \
            any(TEMPORAL.search(s) and _facts(s) for s in edited)
    else:
        intent = src_facts == dst_facts and normalise(source) != normalise(new)

    kept_state: dict[str, set[bool]] = {}
    kept_normal: set[str] = set()
    for s in kept_lines:
        for k, v in _facts(s).items():
            kept_state.setdefault(k, set()).add(v in _PRESENT)
        kept_normal |= global_normal_scope(s)
    contradiction = False
    for f in edited_facts:
        for k, v in f.items():
            states = kept_state.get(k, set())
            if (v in _PRESENT and (False in states or k in kept_normal)) or (v == NEGATIVE and True in states):
                contradiction = True
    return Retention(sentence_retention, must_keep, kept, label_retention, nonlabel_retention, len(terms),
                     bool(intent), contradiction)


def summarise(results: list[tuple[str, Retention]]) -> dict:
    """The task-level figures of metrics/rewrite.json: shares over reports, with the lowest ones named."""
    n = len(results)
    with_terms = [r for _, r in results if r.nonlabel_retention is not None]
    scored = [(pid, r.retention) for pid, r in results if r.retention is not None]
    must_keep = sum(r.must_keep for _, r in results)
    labelled = [r.label_retention for _, r in results if r.label_retention is not None]
    out = {
        "reports": n,
        "retention_mean": round(sum(x for _, x in scored) / len(scored), 4) if scored else None,
        "sentences_must_keep": must_keep,
        "sentences_kept_share": round(sum(r.kept for _, r in results) / must_keep, 4) if must_keep else None,
        "label_facts_kept_share": round(sum(labelled) / len(labelled), 4) if labelled else None,
        "reports_with_nonlabel_findings": len(with_terms),
        "nonlabel_findings_kept_share": (round(sum(r.nonlabel_retention == 1.0 for r in with_terms) / len(with_terms), 4)
                                         if with_terms else None),
        "intent_share": round(sum(r.intent for _, r in results) / n, 4) if n else 0.0,
        "contradictions": sum(r.contradiction for _, r in results),
        "lowest": [{"source_pair_id": pid, "retention": round(x, 4)} for pid, x in sorted(scored, key=lambda t: t[1])[:5]],
    }
    return out
