"""The rules rewriter's paraphrase: the same findings in other words and order (pairaug.rewrite.rules)."""

from __future__ import annotations

import re

import numpy as np

from pairaug.data.labeler import POSITIVE, find_mentions
from pairaug.data.report_text import (
    CONTEXT_SECTIONS,
    HEART_NORMAL,
    NEGATIVE_SENTENCES,
    NORMAL_IMPRESSIONS,
    TEMPORAL,
    global_normal_scope,
    nonlabel_findings,
)
from pairaug.rewrite.rules_clauses import PRESENT, _cap, _lower_first, _mentions, _split_end, sentence_facts
from pairaug.rewrite.rules_edit import Draft, Line

# ---------------------------------------------------------------- paraphrase

_SYNONYMS = [(re.compile(rf"\b{a}\b", re.I), b) for a, b in [
    ("unchanged", "stable"), ("stable", "unchanged"), ("again seen", "redemonstrated"),
    ("redemonstrated", "again seen"), ("compared to", "compared with"), ("compared with", "compared to"),
    ("prior study", "previous study"), ("previous study", "prior study"), ("prior exam", "previous exam"),
    ("prior radiograph", "previous radiograph"), ("consistent with", "compatible with"),
    ("compatible with", "consistent with"), ("no evidence of", "no"), ("is seen", "is noted"),
    ("is noted", "is seen"), ("are seen", "are noted"), ("are noted", "are seen"), ("is identified", "is seen"),
    ("demonstrates", "shows"), ("shows", "demonstrates"), ("within normal limits", "normal"),
    ("status post", "after"), ("mildly", "slightly"), ("slightly", "mildly"), ("is present", "is seen"),
    ("there is no", "no"), ("there are no", "no"), ("well expanded", "well inflated"),
    ("well inflated", "well expanded"), ("visualized", "seen"), ("osseous structures", "bony structures"),
    ("bony structures", "osseous structures"), ("appear", "are"), ("appears", "is"),
]]
_TEMPLATE_GROUPS = [
    tuple(t for t in HEART_NORMAL if "mediastin" not in t),
    *NEGATIVE_SENTENCES.values(),
    NORMAL_IMPRESSIONS,
    ("The lungs are clear.", "Lungs are clear.", "Clear lungs."),
]
_VERB = re.compile(r"\b(?:is|are|was|were|has|have|had|seen|noted|present|shows?|demonstrates?|appears?|remains?|"
                   r"identified|no|not|without|may|might|could|represents?|likely|possibl\w*|suggest\w*|concerning|"
                   r"consistent|compatible|cannot|question\w*)\b", re.I)
_COUNT_NOUN = re.compile(r"(?:effusion|pneumothorax|nodule|opacity|mass|lesion|fracture|density|catheter|tube|line)$")


def _signature(text: str) -> tuple:
    mentions = frozenset((m.label, m.status, m.severity, m.side) for m in find_mentions(text))
    return mentions, frozenset(nonlabel_findings(text)), global_normal_scope(text), \
        frozenset(w.lower() for w in TEMPORAL.findall(text)) - {"stable", "unchanged"}


def _rewordings(text: str) -> list[str]:
    out = []
    for group in _TEMPLATE_GROUPS:
        if text in group:
            out += [t for t in group if t != text]
    for pattern, new in _SYNONYMS:
        if pattern.search(text):
            out.append(_cap(pattern.sub(new, text, count=1)))
    core, end = _split_end(text)
    m = re.match(r"^There (is|are) (?:a |an )?(?!no\b)(.+)$", core)
    if m and "," not in core:
        out.append(f"{_cap(m.group(2))} {m.group(1)} seen{end}")
    mentions = _mentions(core)
    ends_in_finding = any(m.end == len(core) for m in mentions) and all(m.status == POSITIVE for m in mentions)
    if ends_in_finding and not _VERB.search(core) and not re.search(r",| and | with ", core) and len(core.split()) <= 8 \
            and not core[:1].isdigit():
        low = _lower_first(core)
        if re.search(r"s$", core) and not re.search(r"(?:sis|thorax|us)$", core):
            out.append(f"There are {low}{end}")
        elif _COUNT_NOUN.search(core.lower()):
            out.append(f"There is {'an' if low[:1] in 'aeiou' else 'a'} {low}{end}")
        else:
            out.append(f"There is {low}{end}")
    m = re.match(r"^No ([a-z ]+) or ([a-z ]+)$", core)
    if m:
        out.append(f"No {m.group(2)} or {m.group(1)}{end}")
    return [t for t in dict.fromkeys(out) if t != text]


def _merge_negatives(sec: list[Line]) -> list[Line]:
    """Adjacent "No X." sentences as one list: "No X or Y."."""
    out: list[Line] = []
    for line in sec:
        prev = out[-1] if out else None
        a = re.fullmatch(r"No ([a-z ]+)\.", prev.text) if prev is not None else None
        b = re.fullmatch(r"No ([a-z ]+)\.", line.text)
        if a and b and " or " not in prev.text and " or " not in line.text:
            merged = f"No {a.group(1)} or {b.group(1)}."
            if _signature(merged) == (_signature(prev.text)[0] | _signature(line.text)[0], frozenset(), frozenset(),
                                      frozenset()):
                out[-1] = Line(merged, original=False)
                continue
        out.append(line)
    return out


def _reword(out: Draft, rng: np.random.Generator, skip_p: float, shorter_only: bool = False) -> None:
    for sec in out.lines:
        for li, line in enumerate(sec):
            options = _rewordings(line.text)
            if shorter_only:
                options = [o for o in options if len(o.split()) <= len(line.text.split())]
            if not options or rng.random() < skip_p:
                continue
            want = _signature(line.text)
            for i in rng.permutation(len(options)):
                if _signature(options[i]) == want:
                    sec[li] = Line(options[i], original=False)
                    break


def rewrite_paraphrase(d: Draft, rng: np.random.Generator, max_words: int | None = None) -> Draft:
    out = d.copy()
    _reword(out, rng, 0.25)
    if max_words is not None and out.words() > max_words:
        out = d.copy()  # a longer wording would push a finding out: only rewordings that are not longer
        _reword(out, rng, 0.25, shorter_only=True)
    for si in range(len(out.lines)):
        if rng.random() < 0.6:
            out.lines[si] = _merge_negatives(out.lines[si])
        # Findings first, normal statements after, in sections that are not numbered lists.
        sec = out.lines[si]
        if out.names[si] not in CONTEXT_SECTIONS and not any(x.text[:1].isdigit() for x in sec) and len(sec) > 1:
            groups: list[list[Line]] = []
            for x in sec:  # a sentence that refers back stays with the one before it
                if groups and re.match(r"^(?:this|these|it|they|otherwise|however|again|also|additionally)\b",
                                       x.text, re.I):
                    groups[-1].append(x)
                else:
                    groups.append([x])
            finding = [g for g in groups if any(v in PRESENT for x in g for v in sentence_facts(x.text).values())
                       or any(nonlabel_findings(x.text) for x in g)]
            rest = [g for g in groups if g not in finding]
            if rng.random() < 0.5:
                rest = rest[::-1]
            out.lines[si] = [x for g in finding + rest for x in g]
    if out.text() == d.text():
        _reword(out, rng, 0.0, shorter_only=max_words is not None and d.words() >= max_words)  # every sentence that can be reworded, rather than the report as it was
    out.edits.append("paraphrase")
    if out.text() == d.text():
        out.edits = []
    return out
