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

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from pairaug.data.labeler import NEGATIVE, PATHOLOGIES, POSITIVE, UNCERTAIN, find_mentions, label_report
from pairaug.data.phantom import FINDINGS
from pairaug.data.report_text import (
    CONTEXT_SECTIONS,
    HEART_NORMAL,
    NEGATIVE_SENTENCES,
    NORMAL_IMPRESSIONS,
    TEMPORAL,
    Finding,
    Section,
    finding_sentence,
    global_normal_scope,
    impression_phrase,
    join_report,
    nonlabel_findings,
    split_report,
)
from pairaug.data.schema import LABELS
from pairaug.hashing import seed_from

MODEL = "rules-v2"
SEVERITY_ORDER = ("mild", "moderate", "large")
PRESENT = (POSITIVE, UNCERTAIN)
_MENTIONABLE = tuple(label for label in LABELS if label != "No Finding")
# Labels an edit may negate, assert or change. Devices, nodules, fractures and pleural thickening are
# kept as written: a rewrite that drops a PICC or a nodule says something no one can check.
EDITABLE = ("Cardiomegaly", "Enlarged Cardiomediastinum", "Lung Opacity", "Edema", "Consolidation", "Pneumonia",
            "Atelectasis", "Pneumothorax", "Pleural Effusion")
# Labels a clause may state together with the edited one and go with it ("opacity, likely atelectasis").
_FAMILY = {
    "Lung Opacity": {"Consolidation", "Pneumonia", "Atelectasis", "Edema"},
    "Consolidation": {"Lung Opacity", "Pneumonia"},
    "Pneumonia": {"Lung Opacity", "Consolidation"},
    "Atelectasis": {"Lung Opacity"},
    "Edema": {"Lung Opacity"},
    "Cardiomegaly": {"Enlarged Cardiomediastinum"},
    "Enlarged Cardiomediastinum": {"Cardiomegaly"},
}

_SEV_WORDS = {
    "mild": r"trace|tiny|small|mild|mildly|minimal|minimally|slight|slightly|subtle|patchy",
    "moderate": r"moderate|moderately|focal|plate-?like",
    "large": r"large|severe|severely|marked|markedly|massive|extensive|substantial|dense",
}
_SEV = [(sev, re.compile(rf"\b(?:{words})\b")) for sev, words in _SEV_WORDS.items()]
_SIDE = re.compile(r"\b(left|right|bilateral|bibasilar|bibasal|both)\b")
_ENUMERATED = re.compile(r"^\d{1,2}[.)]\s+")  # an item of a numbered list ("2. Small left effusion.")
_LOBE = re.compile(r"\b(upper|middle|lower)\s+lobes?\b")
# Clause boundaries inside a sentence: list commas, semicolons, and / or / with / nor.
_CLAUSE_SEP = re.compile(r"\s*[,;]\s+(?:(?:and|or|with|but|nor)\s+)?|\s+(?:and|or|with|nor|plus)\s+")
# A clause that only qualifies the one before it ("..., concerning for pneumonia").
_QUALIFIER = re.compile(r"^(?:which |that )?(?:is |are |may |might |could )?(?:likely|probably|possibly|"
                        r"concerning|suspicious|suggest\w*|compatible|consistent|representing|represent\w*|"
                        r"reflecting|reflect\w*|due to|related to|in keeping|worrisome|possibly|may|could|"
                        r"unchanged|stable|new|increased|decreased|improved|worsened|persistent|since|from|"
                        r"compared|as before|again|(?:a )?(?:visible )?pleural line)\b")
_NP_MODIFIER = set(
    ["a", "an", "the", "small", "tiny", "trace", "mild", "mildly", "minimal", "moderate", "moderately", "large", "severe", "severely", "marked", "markedly", "massive", "extensive", "substantial", "patchy", "focal", "dense", "plate-like", "platelike", "left", "right", "bilateral", "bibasilar", "bibasal", "basilar", "basal", "apical", "upper", "middle", "lower", "lobe", "lung", "pleural", "pulmonary", "interstitial", "perihilar", "airspace", "layering", "loculated", "subsegmental", "residual", "persistent", "stable", "unchanged", "new", "increased", "decreased", "worsening", "improving", "small-to-moderate", "moderate-to-large"])


@dataclass(frozen=True)
class Item:
    """One finding as a statement says it: label, status 1 / 0 / -1, and severity, side, lobe where known."""

    label: str
    status: int
    severity: str | None = None
    side: str | None = None
    lobe: str | None = None


@dataclass(frozen=True)
class RulesAnswer:
    text: str
    edits: tuple[str, ...] = ()  # what was changed, e.g. ("remove Pleural Effusion",); empty: nothing could be
    too_long: str | None = None  # why `text` is over max_words: what it must keep does not fit (skipped_long)


def sentence_facts(text: str) -> dict[str, int]:
    """The labels one sentence states (CheXpert aggregation inside the sentence), None-labels left out."""
    return {k: v for k, v in label_report(text).items() if v is not None and k != "No Finding"}


def _cap(text: str) -> str:
    """`text` with its first letter in capitals; after a list number ("2. stable ...") the item's first."""
    m = _ENUMERATED.match(text)
    if m:
        return m.group(0) + _cap(text[m.end():])
    return text[0].upper() + text[1:] if text else text


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    if len(first) > 1 and (first.isupper() or any(ch.isdigit() for ch in first)):
        return text  # an acronym or a measure ("PICC", "RUL", "1.5"): as written
    return text[0].lower() + text[1:] if text else text


def _choose(rng: np.random.Generator, options) -> str:
    options = list(options)
    return str(options[int(rng.integers(len(options)))])


# ---------------------------------------------------------------- phantom findings


def _as_finding(item: Item) -> Finding | None:
    """The phantom Finding for `item` when the phantom's templates can say it faithfully, else None."""
    if item.label not in FINDINGS or item.status == NEGATIVE or item.severity is None:
        return None
    hedged = item.status == UNCERTAIN
    if hedged and item.severity != "mild":
        return None  # the phantom hedges only mild findings ("possible mild cardiomegaly")
    side, lobe = item.side, item.lobe
    if item.label == "Pleural Effusion" and side is None:
        return None
    if item.label in ("Consolidation", "Atelectasis", "Pneumothorax") and side not in ("left", "right"):
        return None
    if item.label == "Consolidation" and (lobe is None or (lobe == "middle" and side != "right")):
        return None
    if item.label == "Atelectasis":
        lobe = "lower"
    if item.label in ("Cardiomegaly", "Edema"):
        side = "bilateral" if item.label == "Edema" else None
    return Finding(item.label, item.severity, side, lobe, hedged=hedged)


# ---------------------------------------------------------------- generic sentences

_GENERIC_SEV = {
    "Cardiomegaly": {"mild": "mild", "moderate": "moderate", "large": "severe"},
    "Edema": {"mild": "mild", "moderate": "moderate", "large": "severe"},
    "Pleural Effusion": {"mild": "small", "moderate": "moderate", "large": "large"},
    "Pneumothorax": {"mild": "small", "moderate": "moderate", "large": "large"},
    "Consolidation": {"mild": "patchy", "moderate": "focal", "large": "dense"},
    "Atelectasis": {"mild": "minimal", "moderate": "plate-like", "large": "extensive"},
    "Lung Opacity": {"mild": "mild", "moderate": "moderate", "large": "dense"},
    "Lung Lesion": {"mild": "small", "moderate": "", "large": "large"},
}
_NOUN = {
    "Enlarged Cardiomediastinum": "mediastinal widening",
    "Cardiomegaly": "cardiomegaly",
    "Lung Opacity": "lung opacity",
    "Lung Lesion": "pulmonary nodule",
    "Edema": "pulmonary edema",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "pleural effusion",
    "Pleural Other": "pleural thickening",
    "Fracture": "rib fracture",
    "Support Devices": "support devices",
}
# Negative nouns that read well in a list ("No focal consolidation, pleural effusion or pneumothorax.").
_NEG_NOUN = {
    "Lung Opacity": "focal opacity", "Lung Lesion": "pulmonary nodules", "Edema": "pulmonary edema",
    "Consolidation": "focal consolidation", "Pneumonia": "pneumonia", "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax", "Pleural Effusion": "pleural effusion", "Pleural Other": "pleural thickening",
    "Fracture": "acute fracture",
}
_NEG_SENTENCES = {
    "Enlarged Cardiomediastinum": ("Cardiomediastinal silhouette is within normal limits.",
                                   "Normal cardiomediastinal contours."),
    "Cardiomegaly": HEART_NORMAL,
    "Lung Opacity": ("No focal opacity.", "No focal airspace opacity."),
    "Lung Lesion": ("No pulmonary nodules.", "No pulmonary nodule or mass."),
    "Pneumonia": ("No evidence of pneumonia.", "No pneumonia."),
    "Pleural Other": ("No pleural thickening.",),
    "Fracture": ("No acute fracture.", "No displaced rib fracture."),
    "Support Devices": ("No support devices.",),
    **NEGATIVE_SENTENCES,
}
_POS_SPECIAL = {
    "Enlarged Cardiomediastinum": ("The cardiomediastinal silhouette is enlarged.", "Widened mediastinum."),
    "Support Devices": ("Support devices are in place.", "Monitoring and support devices in place."),
}


def _core(item: Item) -> str:
    """A noun phrase for `item` with the severity and side the state knows ("small left pleural effusion")."""
    words: list[str] = []
    if item.severity and item.label in _GENERIC_SEV:
        words.append(_GENERIC_SEV[item.label][item.severity])
    if item.side and item.label not in ("Cardiomegaly", "Enlarged Cardiomediastinum", "Support Devices"):
        words.append(item.side)
    if item.lobe and item.label in ("Consolidation", "Lung Opacity"):
        words.append(f"{item.lobe} lobe")
    noun = _NOUN[item.label]
    if item.label == "Pleural Effusion" and item.side == "bilateral":
        noun = "pleural effusions"
    return " ".join(w for w in [*words, noun] if w)


def _generic_sentences(item: Item) -> list[str]:
    if item.status == NEGATIVE:
        return list(_NEG_SENTENCES[item.label])
    if item.status == UNCERTAIN:
        core = _core(item)
        return [f"Possible {core}.", f"Cannot exclude {core}.", f"Findings may represent {core}."]
    if item.label in _POS_SPECIAL:
        return list(_POS_SPECIAL[item.label])
    core = _core(item)
    out = [f"{_cap(core)}.", f"{_cap(core)} is seen."]
    if item.label == "Cardiomegaly" and item.severity is None:
        out += ["The heart is enlarged.", "Enlarged cardiac silhouette."]
    return out


def _impression(item: Item) -> str:
    finding = _as_finding(item)
    if finding is not None:
        return impression_phrase(finding)
    text = _core(item)
    return f"possible {text}" if item.status == UNCERTAIN else text


def _sample_item(label: str, rng: np.random.Generator, state: dict[str, Item], hedge_p: float = 0.1) -> Item:
    """A new finding, drawn the way the phantom draws them."""
    sev = _choose(rng, SEVERITY_ORDER) if rng.random() < 0.8 else "mild"
    side = lobe = None
    if label == "Pleural Effusion":
        edema = state.get("Edema")
        both = 0.5 if edema is not None and edema.status == POSITIVE else 0.2
        side = "bilateral" if rng.random() < both else _choose(rng, ("left", "right"))
    elif label in ("Consolidation", "Atelectasis", "Pneumothorax"):
        side = _choose(rng, ("left", "right"))
        if label == "Consolidation":
            lobe = _choose(rng, ("upper", "middle", "lower") if side == "right" else ("upper", "lower"))
        elif label == "Atelectasis":
            lobe = "lower"
    elif label == "Edema":
        side = "bilateral"
    status = UNCERTAIN if sev == "mild" and rng.random() < hedge_p else POSITIVE
    return Item(label, status, sev, side, lobe)


def _alter(item: Item, rng: np.random.Generator) -> Item:
    """The same finding, another severity or side (a different patient's version of it)."""
    options = []
    if item.severity is not None:
        options.append("severity")
    if item.side in ("left", "right") and item.label in ("Pleural Effusion", "Atelectasis", "Pneumothorax"):
        options.append("side")
    if not options:
        return item
    if _choose(rng, options) == "severity":
        sev = _choose(rng, [s for s in SEVERITY_ORDER if s != item.severity])
        status = POSITIVE if item.status == UNCERTAIN and sev != "mild" else item.status
        return replace(item, severity=sev, status=status)
    return replace(item, side="left" if item.side == "right" else "right")



# ---------------------------------------------------------------- clauses of one sentence


def _split_end(sentence: str) -> tuple[str, str]:
    text = sentence.rstrip()
    end = ""
    while text and text[-1] in ".!?":
        end, text = text[-1] + end, text[:-1]
    return text.rstrip(), end or "."


def _clauses(core: str) -> list[tuple[str, int, int]]:
    """(separator before, start, end) of each clause of `core` (a sentence without its final stop)."""
    out, pos, sep = [], 0, ""
    for m in _CLAUSE_SEP.finditer(core):
        out.append((sep, pos, m.start()))
        sep, pos = m.group(0), m.end()
    out.append((sep, pos, len(core)))
    return out


def _mentions(core: str):
    return [m for m in find_mentions(core) if m.sentence == 0 and m.start >= 0]


def _np_start(core: str, start: int) -> int:
    """Where the noun phrase of a mention at `start` begins (severity, side and location words included)."""
    pos = start
    while True:
        m = re.search(r"(\S+)\s+$", core[:pos])
        if m is None or m.group(1).lower().strip(",") not in _NP_MODIFIER:
            return pos
        pos = m.start()


def remove_labels(sentence: str, labels: set[str]) -> tuple[str | None, bool]:
    """`sentence` without the clauses stating `labels` (None: nothing left), and whether that is safe.

    Safe means the rest still says what it said about every other label and keeps every finding
    outside the labels; a qualifier clause ("concerning for pneumonia") goes with its finding.
    """
    core, end = _split_end(sentence)
    mentions = _mentions(core)
    clauses = _clauses(core)
    hit = {i for i, (_, s, e) in enumerate(clauses) if any(m.label in labels and s <= m.start < e for m in mentions)}
    if not hit:
        return sentence, True
    for i in sorted(hit):
        j = i + 1
        while j < len(clauses) and j not in hit and _QUALIFIER.match(core[clauses[j][1]:clauses[j][2]].lower()):
            hit.add(j)
            j += 1
    removed_labels = {m.label for m in mentions if any(s <= m.start < e for k, (_, s, e) in enumerate(clauses)
                                                       if k in hit)}
    allowed = set(labels).union(*(_FAMILY.get(label, set()) for label in labels))
    stray = {m.label for m in mentions if m.label in removed_labels - allowed and m.status != UNCERTAIN
             and any(s <= m.start < e for k, (_, s, e) in enumerate(clauses) if k in hit)}
    if stray:
        return sentence, False  # the clause also states another finding: removing it would lose that one
    keep = [i for i in range(len(clauses)) if i not in hit]
    keep = [i for i in keep if _has_content(core[clauses[i][1]:clauses[i][2]], mentions, clauses[i])]
    if not keep:
        return None, not (nonlabel_findings(sentence) - set())
    parts: list[str] = []
    for n, i in enumerate(keep):
        sep, s, e = clauses[i]
        text = core[s:e]
        if n == 0:
            if 0 in hit and i != 0:
                first = min(hit)
                m0 = min((m.start for m in mentions if m.label in labels and clauses[first][1] <= m.start
                          < clauses[first][2]), default=clauses[first][1])
                lead = core[clauses[first][1]:_np_start(core, m0)]
                text = lead + _lower_first(text) if lead.strip() else text
            parts.append(text)
        else:
            if keep[n - 1] != i - 1 and i - 1 in hit and sep.strip(" ,;") == "" and \
                    clauses[i - 1][0].strip(" ,;") in ("or", "and", "nor"):
                sep = clauses[i - 1][0]  # "A, B or C" without B: "A or C"
            parts.append(sep + text)
    last = len(clauses) - 1
    if last in hit and len(keep) > 1 and clauses[last][0].strip(" ,;") in ("or", "and", "nor") \
            and parts[-1].startswith(", "):
        parts[-1] = clauses[last][0] + parts[-1][2:]  # "A, B or C" without C: "A or B"
    out = _cap(re.sub(r"^(?:and|or|with|but|nor)\s+", "", "".join(parts).strip(" ,;"))) + end
    ok = _same_except(sentence, out, removed_labels)
    if not ok and _negative_only(sentence, removed_labels):
        alt = "No " + _lower_first(re.sub(r"^(?:no|there is no|there are no)\s+", "", out, flags=re.I))
        if _same_except(sentence, alt, removed_labels):
            return alt, True
    return out, ok


def _has_content(text: str, mentions, clause) -> bool:
    _, s, e = clause
    if any(s <= m.start < e for m in mentions) or nonlabel_findings(text) or global_normal_scope(text):
        return True
    return len(text.split()) > 3 and not TEMPORAL.fullmatch(text.strip())


def _negative_only(sentence: str, removed: set[str]) -> bool:
    facts = {k: v for k, v in sentence_facts(sentence).items() if k not in removed}
    return bool(facts) and all(v == NEGATIVE for v in facts.values())


def _same_except(before: str, after: str, removed: set[str]) -> bool:
    a = {k: v for k, v in sentence_facts(before).items() if k not in removed}
    b = {k: v for k, v in sentence_facts(after).items() if k not in removed}
    return a == b and nonlabel_findings(before) <= nonlabel_findings(after) and \
        set(sentence_facts(after)) <= set(sentence_facts(before)) - removed | set(a)


def _attributes(sentence: str, label: str) -> tuple[str | None, str | None, str | None]:
    """Severity, side and lobe the sentence states for `label` (in the clause of its first mention)."""
    core, _ = _split_end(sentence)
    low = core.lower()
    for m in _mentions(core):
        if m.label != label or m.status == NEGATIVE:
            continue
        for _, s, e in _clauses(core):
            if s <= m.start < e:
                window = low[s:e]
                sev = next((name for name, pat in _SEV if pat.search(window)), None)
                side_m = _SIDE.search(window)
                side = side_m.group(1) if side_m else None
                if side in ("bibasilar", "bibasal", "both"):
                    side = "bilateral"
                lobe_m = _LOBE.search(window)
                return sev, side, lobe_m.group(1) if lobe_m else None
    return None, None, None


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
