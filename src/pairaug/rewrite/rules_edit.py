"""The rules rewriter's draft of a report and its edits: a finding's new statement, one edit applied to
every sentence that states the finding, the contradiction check, and fitting `max_words`
(pairaug.rewrite.rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from pairaug.data.labeler import NEGATIVE, PATHOLOGIES, find_mentions, label_report
from pairaug.data.report_text import (
    CONTEXT_SECTIONS,
    NORMAL_IMPRESSIONS,
    Section,
    finding_sentence,
    global_normal_scope,
    join_report,
    nonlabel_findings,
    split_report,
)
from pairaug.data.schema import LABELS
from pairaug.rewrite.rules_clauses import (
    _ENUMERATED,
    _GENERIC_SEV,
    _NEG_NOUN,
    _NEG_SENTENCES,
    PRESENT,
    Item,
    _as_finding,
    _cap,
    _choose,
    _core,
    _generic_sentences,
    _impression,
    _same_except,
    _split_end,
    remove_labels,
    sentence_facts,
)

# ---------------------------------------------------------------- the draft being edited


@dataclass
class Line:
    text: str
    original: bool = True  # as written in the source
    statement: bool = False  # a new statement of an edit: never dropped


@dataclass
class Draft:
    headers: list[str]
    names: list[str]
    lines: list[list[Line]]
    edits: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, report: str) -> Draft:
        sections = split_report(report)
        return cls([s.header for s in sections], [s.name for s in sections],
                   [[Line(t) for t in s.sentences] for s in sections])

    def copy(self) -> Draft:
        return Draft(list(self.headers), list(self.names), [[replace(x) for x in sec] for sec in self.lines],
                     list(self.edits))

    def text(self) -> str:
        return join_report([Section(h, [x.text for x in sec]) for h, sec in zip(self.headers, self.lines)])

    def words(self) -> int:
        return len(self.text().split())

    def all(self) -> list[tuple[int, int, Line]]:
        return [(si, li, x) for si, sec in enumerate(self.lines) for li, x in enumerate(sec)]

    def main_section(self) -> int:
        """Where new findings are stated: FINDINGS, else the first section that is not context."""
        if "FINDINGS" in self.names:
            return self.names.index("FINDINGS")
        for i, name in enumerate(self.names):
            if name not in CONTEXT_SECTIONS and name not in ("IMPRESSION", "IMPRESSIONS", "CONCLUSION"):
                return i
        for i, name in enumerate(self.names):
            if name not in CONTEXT_SECTIONS:
                return i
        if not self.names:
            self.headers, self.names, self.lines = [""], [""], [[]]
        return len(self.names) - 1

    def impression(self) -> int | None:
        for i, name in enumerate(self.names):
            if name in ("IMPRESSION", "IMPRESSIONS", "CONCLUSION", "CONCLUSIONS") and i != self.main_section():
                return i
        return None

    def labels(self) -> dict[str, int | None]:
        return label_report(self.text())


# ---------------------------------------------------------------- statements


_NOUN_SIDE_LABELS = ("Pleural Effusion", "Pneumothorax", "Atelectasis", "Consolidation", "Lung Opacity")


def _noun_side(item: Item) -> str:
    """"left pleural effusion": the finding without its severity."""
    return _core(replace(item, severity=None))


def _sev_word(item: Item) -> str:
    return _GENERIC_SEV.get(item.label, {}).get(item.severity or "", "") or (item.severity or "")


def _checked(options: list[str], want: dict[str, int], rng: np.random.Generator) -> str | None:
    options = [options[i] for i in rng.permutation(len(options))]
    return next((t for t in options if sentence_facts(t) == want), None)


def statement(kind: str, item: Item, rng: np.random.Generator) -> str | None:
    """One new sentence saying `item` the way an edit of `kind` does (checked with the labeler)."""
    want = {item.label: item.status}
    the = _noun_side(item)
    if kind == "negate":
        return _checked(list(_NEG_SENTENCES[item.label]), want, rng) or _checked(_generic_sentences(item), want, rng)
    if kind == "resolve":
        return _checked([f"Interval resolution of the {the}.", f"The previously seen {the} has resolved.",
                         f"Resolved {the}."], {item.label: NEGATIVE}, rng)
    if kind == "progress":
        return _checked([f"Interval increase in the {the}, now {_sev_word(item)}.", f"Worsening {_core(item)}.",
                         f"Increased {_core(item)} since the prior study."], want, rng)
    if kind == "improve":
        return _checked([f"Interval decrease in the {the}, now {_sev_word(item)}.", f"Improving {_core(item)}.",
                         f"Decreased {_core(item)} since the prior study."], want, rng)
    if kind == "new":
        return _checked([f"New {_core(item)}.", f"Interval development of {_core(item)}."], want, rng)
    # assert / alter: the phantom's words where they fit
    finding = _as_finding(item)
    for _ in range(4 if finding is not None else 0):
        text = finding_sentence(finding, rng)
        if sentence_facts(text) == want:
            return text
    return _checked(_generic_sentences(item), want, rng)


def impression_text(kind: str, item: Item) -> str | None:
    if kind in ("negate", "resolve"):
        return f"interval resolution of the {_noun_side(item)}" if kind == "resolve" else None
    phrase = _impression(item)
    return {"progress": f"worsening {phrase}", "improve": f"improving {phrase}", "new": f"new {phrase}"}.get(kind, phrase)


# ---------------------------------------------------------------- one edit


def apply_edit(draft: Draft, kind: str, item: Item, rng: np.random.Generator) -> Draft | None:
    """`draft` with one edit of `item.label` applied, or None when it cannot be done cleanly."""
    label = item.label
    # A pneumonia goes with the consolidation or opacity that shows it.
    labels = {label, "Pneumonia"} if kind in ("negate", "resolve") and label in ("Consolidation", "Lung Opacity") \
        else {label}
    d = draft.copy()
    text = statement(kind, item, rng)
    if text is None:
        return None
    positive_now = kind not in ("negate", "resolve")
    # Sentences to edit: those stating the label (present, or also absent when the edit asserts it).
    targets = []
    for si, li, line in d.all():
        facts = sentence_facts(line.text)
        status = facts.get(label)
        if status is None and labels != {label} and facts.get("Pneumonia") in PRESENT:
            status = facts["Pneumonia"]
        if status in PRESENT or (status == NEGATIVE and positive_now) or positive_now and label in global_normal_scope(line.text) and not line.statement:
            targets.append((si, li))
    main, imp = d.main_section(), d.impression()
    placed = False
    emptied_imp: int | None = None
    imp_carrier: int | None = None
    new_sections = [list(sec) for sec in d.lines]
    # Process from the end so indices stay valid.
    order = sorted(targets, key=lambda t: (t[0] != main, t[0], t[1]))
    primary = order[0] if order and order[0][0] == main else None
    for si, li in sorted(targets, reverse=True):
        line = d.lines[si][li]
        if label in global_normal_scope(line.text) and sentence_facts(line.text).get(label) is None:
            rest = None  # "No acute cardiopulmonary process." goes when a finding is asserted
        else:
            rest, ok = remove_labels(line.text, labels)
            if not ok:
                return None
        if (si, li) == primary:
            new_line = Line(text, original=False, statement=True)
            if rest is None:
                new_sections[si][li] = new_line
            else:
                new_sections[si][li] = Line(rest, original=False)
                new_sections[si].insert(li + 1, new_line)
            placed = True
            continue
        if rest is None:
            del new_sections[si][li]
            if si == imp:
                emptied_imp = li if emptied_imp is None else min(emptied_imp, li)
        else:
            new_sections[si][li] = Line(rest, original=rest == line.text)
            if si == imp and sentence_facts(line.text).get(label) in PRESENT:
                imp_carrier = li
    d.lines = new_sections
    if not placed:
        sec = d.lines[main]
        last = max((i for i, x in enumerate(sec) if any(v in PRESENT for v in sentence_facts(x.text).values())),
                   default=-1)
        sec.insert(last + 1, Line(text, original=False, statement=True))
    phrase = impression_text(kind, item)
    if imp is not None and phrase:
        sec = d.lines[imp]
        if imp_carrier is not None and imp_carrier < len(sec):
            carrier = sec[imp_carrier]
            core, end = _split_end(carrier.text)
            joined = f"{core} and {phrase}{end}" if " and " not in core else f"{core.replace(' and ', ', ')} and {phrase}{end}"
            if _same_except(carrier.text, joined, {label}):
                sec[imp_carrier] = Line(joined, original=False, statement=True)
            else:
                sec.insert(imp_carrier + 1, Line(_cap(phrase) + ".", original=False, statement=True))
        elif emptied_imp is not None or (positive_now and kind != "alter"):
            at = emptied_imp if emptied_imp is not None else len(sec)
            sec.insert(min(at, len(sec)), Line(_cap(phrase) + ".", original=False, statement=True))
    if imp is not None and not d.lines[imp] and draft.lines[imp]:
        present = [k for k, v in d.labels().items() if k in PATHOLOGIES and v in PRESENT]
        if not present:
            d.lines[imp] = [Line(_choose(rng, NORMAL_IMPRESSIONS), original=False)]
    d.edits.append(f"{kind} {label}")
    return d if not contradictions(d) else None


def contradictions(d: Draft) -> list[str]:
    """Labels that a kept sentence and an edited one state both present and absent."""
    kept: dict[str, set[int]] = {}
    edited: dict[str, set[int]] = {}
    kept_normal: set[str] = set()
    for _, _, line in d.all():
        facts = sentence_facts(line.text)
        bucket = kept if line.original else edited
        for k, v in facts.items():
            bucket.setdefault(k, set()).add(1 if v in PRESENT else 0)
        if line.original:
            kept_normal |= global_normal_scope(line.text)
    out = []
    for label, states in edited.items():
        other = kept.get(label, set())
        if (1 in states and 0 in other) or (0 in states and 1 in other) or (1 in states and label in kept_normal):
            out.append(label)
    return out


# ---------------------------------------------------------------- fitting max_words


@lru_cache(maxsize=8192)
def _sentence_info(text: str) -> tuple[dict[str, int], frozenset[tuple], frozenset[str]]:
    """A sentence's facts, the details of its mentions (label, present?, severity, side, device) and its
    findings outside the labels: what `_drop_rank` compares between sentences."""
    details = frozenset((m.label, m.status in PRESENT, m.severity, m.side,
                         m.text if m.label == "Support Devices" else None) for m in find_mentions(text))
    return sentence_facts(text), details, frozenset(nonlabel_findings(text))


def _covered(detail: tuple, others: set[tuple]) -> bool:
    """Whether another sentence says `detail` too (a detail left unsaid, e.g. no severity, is covered)."""
    label, present, sev, side, device = detail
    return any(o[0] == label and o[1] == present and sev in (None, o[2]) and side in (None, o[3]) and o[4] == device
               for o in others)


# Ranks of `_drop_rank`: which sentences go first when a rewrite is too long.
RESTATED, NORMAL_STUDY, CONTEXT, NEGATIVE_ELSEWHERE, NEGATIVE_ONLY = range(5)


def _drop_rank(d: Draft, si: int, line: Line, keep_negatives: bool = False) -> int | None:
    """How early `line` may go when the rewrite is too long (None: never).

    RESTATED: everything it states is stated by another sentence (an IMPRESSION repeating a finding of
    the FINDINGS: one statement stays, with its severity and side); NORMAL_STUDY: "normal study"
    sentences that state no label; CONTEXT: technique, comparison, history; NEGATIVE_ELSEWHERE: a
    negative statement of labels another sentence states too; NEGATIVE_ONLY: the only statement of a
    label, and only when not `keep_negatives`. A positive finding, a device or a finding outside the
    labels that no other sentence states, and an edit's new statement, never go.
    """
    if line.statement:
        return None
    facts, details, terms = _sentence_info(line.text)
    if not facts and not terms:
        if _ENUMERATED.match(line.text) is None and not re.search(r"[a-z]", line.text, re.I):
            return RESTATED  # a bare list number ("2.") says nothing
        return NORMAL_STUDY if global_normal_scope(line.text) and d.names[si] not in CONTEXT_SECTIONS else CONTEXT
    others = [_sentence_info(x.text) for _, _, x in d.all() if x is not line]
    other_facts: dict[str, set[int]] = {}
    for f, _, _ in others:
        for k, v in f.items():
            other_facts.setdefault(k, set()).add(v)
    other_details = set().union(*(x[1] for x in others)) if others else set()
    other_terms = set().union(*(x[2] for x in others)) if others else set()
    if terms <= other_terms and all(v in other_facts.get(k, ()) for k, v in facts.items()) \
            and all(_covered(x, other_details) for x in details):
        return RESTATED
    if terms or "Support Devices" in facts or any(v in PRESENT for v in facts.values()):
        return None  # a finding, a device and its position or its removal: kept
    if all(k in other_facts for k in facts):
        return NEGATIVE_ELSEWHERE
    return None if keep_negatives else NEGATIVE_ONLY


# Nouns for one merged list of negatives ("No cardiomegaly, focal consolidation or pneumothorax.").
_LIST_NOUN = {"Cardiomegaly": "cardiomegaly", "Enlarged Cardiomediastinum": "mediastinal widening", **_NEG_NOUN}


def _merge_negative_sentences(d: Draft) -> bool:
    """Each section's negative statements said as one list sentence where that is shorter; merged or not."""
    merged_any = False
    for sec in d.lines:
        idx, labels = [], []
        for li, x in enumerate(sec):
            facts, _, terms = _sentence_info(x.text)
            if x.statement or terms or _ENUMERATED.match(x.text) or not facts or \
                    any(v != NEGATIVE or k not in _LIST_NOUN for k, v in facts.items()):
                continue
            idx.append(li)
            labels += [k for k in LABELS if k in facts and k not in labels]
        if len(idx) < 2:
            continue
        nouns = [_LIST_NOUN[k] for k in labels]
        text = "No " + (nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]) + "."
        if sentence_facts(text) != {k: NEGATIVE for k in labels} or \
                len(text.split()) >= sum(len(sec[li].text.split()) for li in idx):
            continue
        sec[idx[0]] = Line(text, original=False)
        for li in reversed(idx[1:]):
            del sec[li]
        merged_any = True
    return merged_any


def _renumber(d: Draft) -> None:
    """Numbered lists that lost items numbered 1, 2, ... again (no "1. ... 3." after a cut)."""
    for sec in d.lines:
        if sec and all(_ENUMERATED.match(x.text) for x in sec):
            for i, x in enumerate(sec):
                m = re.match(r"\d{1,2}", x.text)
                text = f"{i + 1}{x.text[m.end():]}"
                if text != x.text:
                    sec[i] = replace(x, text=text, original=False)


def fit_words(d: Draft, max_words: int, keep_negatives: bool = False) -> Draft:
    """Drop the least informative sentences (by `_drop_rank`, latest first) until the report has at most
    `max_words` words; before a label's only statement would go, negatives are merged into one list.
    When even that does not fit, the draft stays over `max_words`: the caller skips it (skipped_long)."""
    dropped = merged = False
    while d.words() > max_words:
        best = None
        for si, li, line in d.all():
            rank = _drop_rank(d, si, line, keep_negatives)
            if rank is not None and (best is None or (rank, -si, -li) <= (best[0], -best[1], -best[2])):
                best = (rank, si, li)
        if not merged and (best is None or best[0] == NEGATIVE_ONLY):
            merged = True
            if _merge_negative_sentences(d):
                continue
        if best is None:
            break  # only findings and edits left (and the only statements of labels, if kept)
        del d.lines[best[1]][best[2]]
        dropped = True
    if dropped:
        _renumber(d)
    return d
