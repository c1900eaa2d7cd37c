"""The offline rewriter: the embedded default for the LLM, deterministic and free.

It parses a report with the labeler (`find_mentions`, `label_report`) into a *state* — each
mentioned label with its status and, where the text says, severity, side and lobe — edits the state
for the task, and writes a new report from the state in the phantom's style (FINDINGS / IMPRESSION,
the phantom's own sentence templates), at most `max_words` words:

- `inter`  a plausible different patient: flip one or two findings present ↔ absent, sometimes also
           change another finding's severity or side (PairAug's "partially opposite meaning");
- `intra`  the same patient later: progression, improvement, resolution or a new finding; side and
           lobe of everything else kept;
- `paraphrase` the same labels, reworded (other templates, other order, lists of negatives).

Every sentence, and then the whole report, is parsed back with the labeler and redrawn until it
says exactly the labels intended, so the output's labels are the ones the rewriter meant. Reports in
other wording (MIMIC, OpenI) degrade gracefully: labels the phantom cannot draw, or findings whose
severity or side the source does not state, are written with plain generic sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from pairaug.data.labeler import (
    NEGATIVE,
    PATHOLOGIES,
    POSITIVE,
    UNCERTAIN,
    find_mentions,
    label_report,
    split_sentences,
)
from pairaug.data.phantom import (  # the phantom's own report templates, so rewrites read like the dataset
    _HEART_NORMAL,
    _NEG,
    _NORMAL_IMPRESSION,
    FINDINGS,
    Finding,
    finding_sentence,
    impression_phrase,
)
from pairaug.data.schema import LABELS
from pairaug.io import seed_from

MODEL = "rules-v1"
SEVERITY_ORDER = ("mild", "moderate", "large")
_MENTIONABLE = tuple(label for label in LABELS if label != "No Finding")

# Words that set a finding's severity (the phantom's own words included: patchy/focal/dense for
# consolidation, minimal/plate-like/extensive for atelectasis).
_SEV_WORDS = {
    "mild": r"trace|tiny|small|mild|mildly|minimal|minimally|slight|slightly|subtle|patchy",
    "moderate": r"moderate|moderately|focal|plate-?like",
    "large": r"large|severe|severely|marked|markedly|massive|extensive|substantial|dense",
}
_SEV = [(sev, re.compile(rf"\b(?:{words})\b")) for sev, words in _SEV_WORDS.items()]
_SIDE = re.compile(r"\b(left|right|bilateral|bibasilar|bibasal|both)\b")
_LOBE = re.compile(r"\b(upper|middle|lower)\s+lobes?\b")
_CLAUSE_BREAK = re.compile(r",|;|\band\b|\bwith\b|\bbut\b|\.")


@dataclass(frozen=True)
class Item:
    """One mentioned label of a report: status 1 / 0 / -1 and what the text says about it."""

    label: str
    status: int
    severity: str | None = None
    side: str | None = None
    lobe: str | None = None


State = dict[str, Item]


@dataclass(frozen=True)
class RulesAnswer:
    text: str
    intended: dict[str, int | None]


# ---------------------------------------------------------------- parsing


def parse_state(report: str) -> State:
    """The labels of `report` (per the labeler) with severity, side and lobe where stated."""
    labels = label_report(report)
    sentences = [s.lower() for s in split_sentences(report)]
    mentions = find_mentions(report)
    state: State = {}
    for label in _MENTIONABLE:
        status = labels[label]
        if status is None:
            continue
        sev = side = lobe = None
        if status != NEGATIVE:
            for m in mentions:
                if m.label != label or m.status != status or m.sentence >= len(sentences):
                    continue
                s2, d2, l2 = _attributes(sentences[m.sentence], m.text)
                sev, side, lobe = sev or s2, side or d2, lobe or l2
        state[label] = Item(label, status, sev, side, lobe)
    return state


def _attributes(sentence: str, mention: str) -> tuple[str | None, str | None, str | None]:
    """Severity, side and lobe stated in the clause around one mention."""
    start = sentence.find(mention)
    if start < 0:
        return None, None, None
    end = start + len(mention)
    clause_start = 0
    for b in _CLAUSE_BREAK.finditer(sentence, 0, start):
        clause_start = b.end()
    brk = _CLAUSE_BREAK.search(sentence, end)
    window = sentence[clause_start : brk.start() if brk else len(sentence)]
    sev = next((name for name, pat in _SEV if pat.search(window)), None)
    side_m = _SIDE.search(window)
    side = side_m.group(1) if side_m else None
    if side in ("bibasilar", "bibasal", "both"):
        side = "bilateral"
    lobe_m = _LOBE.search(window)
    return sev, side, lobe_m.group(1) if lobe_m else None


def intended_labels(state: State) -> dict[str, int | None]:
    """The 14 labels a report written from `state` must parse to."""
    out: dict[str, int | None] = {label: (state[label].status if label in state else None) for label in LABELS}
    sick = any(out[label] in (POSITIVE, UNCERTAIN) for label in PATHOLOGIES)
    out["No Finding"] = 0 if sick else 1
    return out


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
    "Cardiomegaly": _HEART_NORMAL,
    "Lung Opacity": ("No focal opacity.", "No focal airspace opacity."),
    "Lung Lesion": ("No pulmonary nodules.", "No pulmonary nodule or mass."),
    "Pneumonia": ("No evidence of pneumonia.", "No pneumonia."),
    "Pleural Other": ("No pleural thickening.",),
    "Fracture": ("No acute fracture.", "No displaced rib fracture."),
    "Support Devices": ("No support devices.",),
    **_NEG,
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


def _cap(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


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


# ---------------------------------------------------------------- writing


def _sentence_labels(text: str) -> dict[str, int]:
    return {k: v for k, v in label_report(text).items() if v is not None and k != "No Finding"}


def _choose(rng: np.random.Generator, options) -> str:
    return str(options[int(rng.integers(len(options)))])


def _say(item: Item, rng: np.random.Generator, tries: int = 6) -> str:
    """One sentence stating exactly `item` (checked with the labeler), in the phantom's words if possible."""
    want = {item.label: item.status}
    finding = _as_finding(item)
    generic = _generic_sentences(item)
    for _ in range(tries):
        text = finding_sentence(finding, rng) if finding is not None else _choose(rng, generic)
        if _sentence_labels(text) == want:
            return text
    for text in generic:  # deterministic fallback
        if _sentence_labels(text) == want:
            return text
    return generic[0]


def _negative_list(items: list[Item]) -> str | None:
    nouns = [_NEG_NOUN[i.label] for i in items]
    text = "No " + (nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]) + "."
    want = {i.label: NEGATIVE for i in items}
    return text if _sentence_labels(text) == want else None


def render(state: State, rng: np.random.Generator, *, compact: bool = False, impression: bool = True) -> str:
    """A FINDINGS / IMPRESSION report stating `state` (not yet checked as a whole)."""
    present = [state[k] for k in state if state[k].status != NEGATIVE]
    present = [present[i] for i in rng.permutation(len(present))]
    sentences = [_say(item, rng) for item in present]
    for label in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
        item = state.get(label)
        if item is not None and item.status == NEGATIVE:
            pos = int(rng.integers(0, 2)) if sentences else 0
            sentences.insert(min(pos, len(sentences)), _say(item, rng))
    negatives = [state[k] for k in state if state[k].status == NEGATIVE
                 and k not in ("Cardiomegaly", "Enlarged Cardiomediastinum")]
    negatives = [negatives[i] for i in rng.permutation(len(negatives))]
    listable = [i for i in negatives if i.label in _NEG_NOUN]
    listed = None
    if len(listable) >= 2 and (compact or rng.random() < 0.4):
        listed = _negative_list(listable)
    if listed is not None:
        sentences.append(listed)
        sentences += [_say(i, rng) for i in negatives if i.label not in _NEG_NOUN]
    else:
        sentences += [_say(i, rng) for i in negatives]
    if not present and (not sentences or (not compact and rng.random() < 0.7)):
        sentences.append(_choose(rng, ("The lungs are clear.", "Lungs are well expanded and clear.")))
    text = "FINDINGS: " + " ".join(sentences)
    if not impression:
        return text
    shown = [i for i in present if i.label != "Support Devices"]
    if shown:
        # Hedged findings last: "possible" would otherwise reach the findings listed after it.
        shown.sort(key=lambda i: i.status == UNCERTAIN)
        phrases = [_impression(i) for i in shown]
        joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        imp = _cap(joined) + "."
    else:
        imp = _choose(rng, _NORMAL_IMPRESSION)
    return f"{text} IMPRESSION: {imp}"


def write(state: State, rng: np.random.Generator, max_words: int, avoid: str | None = None) -> str:
    """A report that parses back to `intended_labels(state)` in at most `max_words` words (if possible)."""
    want = intended_labels(state)
    fallback = None
    attempts = [dict(compact=False)] * 5 + [dict(compact=True)] * 3 + [dict(compact=True, impression=False)] * 2
    for kwargs in attempts:
        text = render(state, rng, **kwargs)
        if len(text.split()) > max_words or label_report(text) != want:
            continue
        if avoid is not None and _norm(text) == _norm(avoid):
            fallback = fallback or text
            continue
        return text
    return fallback or render(state, rng, compact=True, impression=False)


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


# ---------------------------------------------------------------- task edits


def _sample_item(label: str, rng: np.random.Generator, state: State, hedge_p: float = 0.1) -> Item:
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


def _remove(state: State, label: str) -> None:
    state[label] = Item(label, NEGATIVE)
    pneumonia = state.get("Pneumonia")
    if label == "Consolidation" and pneumonia is not None and pneumonia.status != NEGATIVE:
        del state["Pneumonia"]  # "consolidation, concerning for pneumonia" goes with the consolidation


def _present(state: State) -> list[str]:
    return [k for k in state if state[k].status != NEGATIVE]


def edit_inter(state: State, rng: np.random.Generator) -> State:
    """A plausible different patient: one or two findings flipped present ↔ absent, maybe one altered."""
    new = dict(state)
    present = _present(new)
    absent = [f for f in FINDINGS if f not in present]
    if present and (not absent or rng.random() < 0.6):
        _remove(new, _choose(rng, present))
    else:
        label = _choose(rng, absent)
        new[label] = _sample_item(label, rng, new)
    if rng.random() < 0.45:
        # A second edit, never undoing the first one.
        untouched = [k for k in FINDINGS if new.get(k) == state.get(k)]
        present = [k for k in _present(new) if new.get(k) == state.get(k)]
        absent = [k for k in untouched if k not in present]
        alterable = [k for k in present if new[k].severity is not None]
        ops = (["remove"] if present else []) + (["add"] if absent else []) \
            + (["alter"] if alterable else [])
        op = _choose(rng, ops) if ops else None
        if op == "remove":
            _remove(new, _choose(rng, present))
        elif op == "add":
            label = _choose(rng, absent)
            new[label] = _sample_item(label, rng, new)
        elif op == "alter":
            label = _choose(rng, alterable)
            new[label] = _alter(new[label], rng)
    return new


def edit_intra(state: State, rng: np.random.Generator) -> State:
    """The same patient later: progression, improvement, resolution or a new finding; the rest kept."""
    new = dict(state)
    touched: set[str] = set()  # a second change never undoes the first
    for _ in range(1 if rng.random() < 0.7 else 2):
        present = [k for k in _present(new) if k not in touched]
        graded = [k for k in present if k in FINDINGS and new[k].severity is not None]
        worse = [k for k in graded if new[k].severity != "large" or new[k].status == UNCERTAIN]
        better = [k for k in graded if new[k].severity != "mild"]
        resolvable = [k for k in present if k != "Cardiomegaly"]  # a big heart does not resolve in days
        absent = [f for f in FINDINGS if f not in _present(new) and f not in touched and f != "Cardiomegaly"]
        ops = (["progression"] * bool(worse) + ["improvement"] * bool(better) + ["resolution"] * 2 * bool(resolvable)
               + ["new"] * 2 * bool(absent))
        if not ops:
            break
        op = _choose(rng, ops)
        if op == "progression":
            label = _choose(rng, worse)
            item = new[label]
            sev = item.severity if item.status == UNCERTAIN else SEVERITY_ORDER[SEVERITY_ORDER.index(item.severity) + 1]
            new[label] = replace(item, severity=sev, status=POSITIVE)
        elif op == "improvement":
            label = _choose(rng, better)
            item = new[label]
            new[label] = replace(item, severity=SEVERITY_ORDER[SEVERITY_ORDER.index(item.severity) - 1])
        elif op == "resolution":
            label = _choose(rng, resolvable)
            _remove(new, label)
        else:
            label = _choose(rng, absent)
            new[label] = _sample_item(label, rng, new, hedge_p=0.0)
        touched.add(label)
    return new


def edit(state: State, task: str, rng: np.random.Generator) -> State:
    if task == "inter":
        return edit_inter(state, rng)
    if task == "intra":
        return edit_intra(state, rng)
    if task == "paraphrase":
        return dict(state)
    raise ValueError(f"unknown task {task!r}")


# ---------------------------------------------------------------- the backend


class RulesRewriter:
    """`rewrite.backend: rules` — deterministic per (seed, source pair, task)."""

    name = "rules"
    model = MODEL

    def __init__(self, seed: int, max_words: int = 50):
        self.seed = seed
        self.max_words = max_words

    def rewrite(self, task: str, report: str, source_id: str) -> RulesAnswer:
        rng = np.random.default_rng(seed_from("rewrite-rules", self.seed, source_id, task))
        state = parse_state(report)
        target = edit(state, task, rng)
        text = write(target, rng, self.max_words, avoid=report if task == "paraphrase" else None)
        return RulesAnswer(text, intended_labels(target))
