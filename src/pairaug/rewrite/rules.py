"""The offline rewriter: the embedded default for the LLM, deterministic and free.

It edits the report's own text, sentence by sentence (`pairaug.data.report_text.split_report`), and
keeps every sentence it does not need to change as written — devices and their positions, nodules,
chronic and incidental findings, technique, comparison, de-identification tokens ("___"):

- `inter`  a plausible different patient: one finding negated or asserted, sometimes a second one
           negated, asserted, or given another severity or side (PairAug's "partially opposite meaning");
- `intra`  the same patient later: one finding progresses, improves, resolves or is new, said with the
           temporal language of a change ("Interval increase in ...", "New ...", "... has resolved");
- `paraphrase` the same findings in other words and order: synonyms, sentence forms, negatives merged
           into lists, finding sentences first; every finding kept, including those outside the labels.

An edit touches every sentence that states the finding: a sentence that states only that finding is
replaced by a new statement; in a sentence that also states others only the finding's clause goes;
negative statements and "normal study" sentences that a new finding would contradict go too. New
statements use the phantom's templates where they fit (`report_text`), else plain generic sentences.
Each edited sentence is checked with the sentence-level labeler (the other labels of a sentence must
read as before), and the whole rewrite for contradictions between kept and edited sentences; an edit
that fails either check is replaced by the next candidate. Outputs fit `max_words` by dropping the
least informative sentences first (`fit_words`: restated sentences, "normal study" sentences, context,
negatives of labels stated elsewhere; then negatives merged into one list, then, for inter and intra
only, a label's only negative statement), never an edited sentence or a positive finding; a rewrite
that still does not fit carries the reason in `too_long` (the stage's `skipped_long`). When no
candidate edit passes, the report is returned with the reason in `edits`.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pairaug.data.labeler import NEGATIVE, POSITIVE
from pairaug.data.phantom import FINDINGS
from pairaug.hashing import seed_from
from pairaug.rewrite.rules_clauses import (
    _GENERIC_SEV,
    EDITABLE,
    MODEL,
    PRESENT,
    SEVERITY_ORDER,
    Item,
    RulesAnswer,
    _attributes,
    _choose,
    _sample_item,
    sentence_facts,
)
from pairaug.rewrite.rules_edit import Draft, apply_edit, fit_words
from pairaug.rewrite.rules_paraphrase import rewrite_paraphrase

# ---------------------------------------------------------------- the three tasks


def present_items(d: Draft) -> dict[str, Item]:
    """Each editable label the draft states present, with its attributes from the first sentence saying so."""
    out: dict[str, Item] = {}
    labels = d.labels()
    for label in EDITABLE:
        status = labels.get(label)
        if status not in PRESENT:
            continue
        sev = side = lobe = None
        for _, _, line in d.all():
            if sentence_facts(line.text).get(label) in PRESENT:
                sev, side, lobe = _attributes(line.text, label)
                break
        out[label] = Item(label, status, sev, side, lobe)
    return out


def _candidates_inter(d: Draft, rng: np.random.Generator) -> list[tuple[str, Item]]:
    present = present_items(d)
    labels = d.labels()
    removals = [("negate", Item(k, NEGATIVE)) for k in present]
    additions = [("assert", _sample_item(k, rng, {})) for k in FINDINGS if labels.get(k) not in PRESENT]
    removals = [removals[i] for i in rng.permutation(len(removals))]
    additions = [additions[i] for i in rng.permutation(len(additions))]
    return removals + additions if removals and rng.random() < 0.6 else additions + removals


def _alterations(d: Draft, rng: np.random.Generator) -> list[tuple[str, Item]]:
    out = []
    for label, item in present_items(d).items():
        if item.severity is not None and label in _GENERIC_SEV:
            sev = _choose(rng, [s for s in SEVERITY_ORDER if s != item.severity])
            out.append(("alter", replace(item, severity=sev, status=POSITIVE)))
        if item.side in ("left", "right") and label in ("Pleural Effusion", "Atelectasis", "Pneumothorax"):
            out.append(("alter", replace(item, side="left" if item.side == "right" else "right")))
    return [out[i] for i in rng.permutation(len(out))]


def _candidates_intra(d: Draft, rng: np.random.Generator) -> list[tuple[str, Item]]:
    present = present_items(d)
    labels = d.labels()
    ops: list[tuple[str, Item]] = []
    for label, item in present.items():
        graded = item.severity is not None and label in _GENERIC_SEV and label != "Cardiomegaly"
        if graded and item.severity != "large":
            sev = SEVERITY_ORDER[SEVERITY_ORDER.index(item.severity) + 1]
            ops.append(("progress", replace(item, severity=sev, status=POSITIVE)))
        if graded and item.severity != "mild":
            ops.append(("improve", replace(item, severity=SEVERITY_ORDER[SEVERITY_ORDER.index(item.severity) - 1],
                                           status=POSITIVE)))
        if label != "Cardiomegaly":  # a big heart does not resolve between two films
            ops += [("resolve", Item(label, NEGATIVE, side=item.side, lobe=item.lobe))] * 2
    for label in FINDINGS:
        if label != "Cardiomegaly" and labels.get(label) not in PRESENT:
            item = _sample_item(label, rng, {}, hedge_p=0.0)
            ops.append(("new", item))
    return [ops[i] for i in rng.permutation(len(ops))]


def _first_that_applies(d: Draft, ops, rng: np.random.Generator, skip: set[str], max_words: int) -> Draft | None:
    """The first candidate edit that applies cleanly and still fits `max_words` (as far as the source does)."""
    limit = max(max_words, fit_words(d.copy(), max_words).words())
    for kind, item in ops:
        if item.label in skip:
            continue
        out = apply_edit(d, kind, item, rng)
        if out is not None and fit_words(out.copy(), max_words).words() <= limit:
            return out
    return None


def rewrite_inter(d: Draft, rng: np.random.Generator, max_words: int) -> Draft:
    out = _first_that_applies(d, _candidates_inter(d, rng), rng, set(), max_words)
    if out is None:
        return d
    if rng.random() < 0.45:
        done = {e.split(" ", 1)[1] for e in out.edits}
        ops = _alterations(out, rng) if rng.random() < 0.5 else _candidates_inter(out, rng)
        out = _first_that_applies(out, ops, rng, done, max_words) or out
    return out


def rewrite_intra(d: Draft, rng: np.random.Generator, max_words: int) -> Draft:
    out = _first_that_applies(d, _candidates_intra(d, rng), rng, set(), max_words)
    if out is None:
        return d
    if rng.random() < 0.3:
        done = {e.split(" ", 1)[1] for e in out.edits}
        out = _first_that_applies(out, _candidates_intra(out, rng), rng, done, max_words) or out
    return out


class RulesRewriter:
    """`rewrite.backend: rules` — deterministic per (seed, source pair, task)."""

    name = "rules"
    model = MODEL

    def __init__(self, seed: int, max_words: int = 50):
        self.seed = seed
        self.max_words = max_words

    def rewrite(self, task: str, report: str, source_id: str) -> RulesAnswer:
        rng = np.random.default_rng(seed_from("rewrite-rules", self.seed, source_id, task))
        draft = Draft.parse(report)
        if task == "inter":
            out = rewrite_inter(draft, rng, self.max_words)
        elif task == "intra":
            out = rewrite_intra(draft, rng, self.max_words)
        elif task == "paraphrase":
            out = rewrite_paraphrase(draft, rng, self.max_words)
        else:
            raise ValueError(f"unknown task {task!r}")
        out = fit_words(out, self.max_words, keep_negatives=task == "paraphrase")
        too_long = None
        if out.words() > self.max_words:
            what = "findings and labels" if task == "paraphrase" else "findings and edits"
            too_long = (f"the source's {what} need {out.words()} words (> rewrite.max_words = {self.max_words}) "
                        f"after the cut")
        return RulesAnswer(out.text(), tuple(out.edits), too_long)
