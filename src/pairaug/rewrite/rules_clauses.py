"""The rules rewriter's vocabulary and the clauses of one sentence: what a sentence states (label,
status, severity, side, lobe), the phantom's and generic sentences for a finding, and removing a label's
clauses from a sentence (pairaug.rewrite.rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from pairaug.data.labeler import NEGATIVE, POSITIVE, UNCERTAIN, find_mentions, label_report
from pairaug.data.phantom import FINDINGS
from pairaug.data.report_text import (
    HEART_NORMAL,
    NEGATIVE_SENTENCES,
    TEMPORAL,
    Finding,
    global_normal_scope,
    impression_phrase,
    nonlabel_findings,
)
from pairaug.data.schema import LABELS

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
