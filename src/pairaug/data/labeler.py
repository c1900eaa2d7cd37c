"""A rule-based, CheXpert-style report labeler: 14 labels, each 1 / 0 / -1 / not mentioned.

Per sentence and clause: find mentions of each label (synonyms), then classify each mention as
uncertain ("possible", "cannot exclude", ...), negated ("no", "without", "... is absent", including
lists such as "No focal consolidation, pleural effusion or pneumothorax.") or positive. Phrases that
state normality ("Heart size is normal.") count as negative mentions. Per label, positive beats
uncertain beats negative (the CheXpert aggregation). "No Finding" is 1 when no pathology is positive
or uncertain, else 0. Mentions also carry severity and laterality, which the rules rewriter uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from pairaug.data.schema import LABELS

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1
PATHOLOGIES = tuple(label for label in LABELS if label not in ("No Finding", "Support Devices"))

# Words that may link a subject to its predicate inside one mention ("cardiac size remains mildly
# enlarged"); "xxxx" is the de-identification token of IU X-ray reports, an unknown word (often the verb).
_LINK = (r"(?:(?:is|are|was|appears?|remains?|again|noted|seen|to|be|now|still|stably|not|no longer|somewhat|"
         r"mildly|moderately|markedly|severely|slightly|minimally|massively|significantly|globally|diffusely|"
         r"borderline|may|might|could|possibly|probably|likely|xxxx) )")

# Synonyms per label. Each pattern matches a mention; its polarity then comes from the context.
_MENTIONS: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": [
        r"enlarged cardiomediastin\w*", r"cardiomediastinal (?:silhouette|contours?) (?:is |are )?(?:\w+ )?(?:enlarged|widened)",
        r"widen(?:ed|ing) (?:of the )?mediastin\w*", r"mediastinal widening", r"mediastinum (?:is |appears )?(?:\w+ )?widened",
    ],
    "Cardiomegaly": [
        r"cardiomegaly", r"cardiac enlargement", r"enlarge(?:d|ment of the) (?:heart|cardiac silhouette)",
        r"(?:heart|cardiac silhouette|cardiac shadow)(?: size)? (?:is |appears |remains |xxxx )?(?:not )?(?:\w+ )?(?:enlarged|increased|prominent)",
        r"heart size (?:is )?(?:\w+ )?(?:enlarged|increased)", r"(?:large|enlarged|big) heart",
        # "Heart is large.", "The heart size is large.", "Cardiac silhouette is big."
        r"(?:heart|cardiac silhouette)(?: size)? (?:is |appears |remains )(?:\w+ )?(?:large|big)\b",
        # "Cardiac size remains mildly enlarged.", "The cardiac silhouette is again noted to be enlarged.",
        # "Heart size XXXX large." (a de-identification token where the verb was): linking words only, so
        # "cardiac silhouette obscured by a large effusion" is not read as a big heart.
        r"(?:heart|cardiac (?:silhouette|shadow|size|contours?))(?: size)? " + _LINK + r"{1,5}(?:enlarged|large|big)\b",
    ],
    "Lung Opacity": [
        r"opacit(?:y|ies)", r"opacification", r"infiltrates?", r"airspace (?:disease|process)", r"densit(?:y|ies)",
        r"hazy", r"haziness",
    ],
    "Lung Lesion": [r"nodules?", r"nodular", r"mass(?:es)?\b", r"lesions?", r"neoplasm", r"tumou?r"],
    "Edema": [
        r"edema", r"oedema", r"(?:pulmonary |interstitial )?vascular congestion", r"pulmonary congestion",
        r"perihilar (?:haze|haziness|opacit(?:y|ies))", r"fluid overload", r"heart failure", r"\bchf\b",
    ],
    "Consolidation": [r"consolidat\w*", r"airspace consolidation"],
    "Pneumonia": [r"pneumonias?", r"infection", r"infectious process"],
    "Atelectasis": [
        r"atelecta\w*", r"plate-?like (?:band|opacit(?:y|ies)|densit(?:y|ies))", r"volume loss", r"collapse of the \w+ lobe",
        r"lobar collapse", r"(?:lobe|lung) collapse", r"collapse of the (?:[\w-]+ ){0,2}(?:lung|lobe)s?\b",
        r"collapsed (?:[\w-]+ ){0,2}(?:lung|lobe)s?\b",
    ],
    # "Pleural air collection", "small apical air collection" (not free air below the diaphragm: _NOT_A_MENTION).
    "Pneumothorax": [r"pneumothora(?:x|ces)", r"apical lucency", r"air collections?\b"],
    "Pleural Effusion": [
        r"(?:pleural )?effusions?", r"pleural fluid", r"blunting of the (?:\w+ )?(?:costophrenic|cp) angles?",
        r"(?:costophrenic|cp) angle blunting", r"hydrothorax", r"layering fluid",
    ],
    "Pleural Other": [r"pleural thickening", r"fibrothorax", r"pleural (?:scarring|plaques?)"],
    "Fracture": [r"fractur\w*"],
    "Support Devices": [
        r"(?:endotracheal|et|ng|nasogastric|chest|enteric|feeding|tracheostomy|orogastric) tubes?", r"catheters?",
        r"(?:picc|central venous|central|midline|swan-ganz) lines?", r"picc\b", r"pacemakers?", r"\bicd\b", r"sternotomy wires",
        r"support devices?", r"port-?a-?cath", r"stents?", r"defibrillator",
    ],
}

# Phrases that state a label is absent without a negation word.
_NORMAL: dict[str, list[str]] = {
    "Cardiomegaly": [
        r"heart(?: size)? (?:is |appears |remains )?(?:normal|within normal limits|top[- ]normal|upper limits of normal)",
        r"(?:heart|cardiac size|cardiac silhouette)(?: size)? (?:is |appears |remains |xxxx )?(?:normal|within normal limits)",
        r"normal(?:-sized)? (?:heart|cardiac silhouette|heart size|cardiac size)",
        r"cardiac silhouette (?:is |appears )?(?:normal|within normal limits|unremarkable)",
        # "Heart size and mediastinal contours are within normal limits.", "The heart and mediastinum are normal."
        r"heart(?: size)? and [a-z ]{1,40}? (?:is |are |appear )(?:normal|within normal limits|unremarkable)",
    ],
    "Pleural Effusion": [r"(?:costophrenic|cp) angles? (?:is |are |remain )?(?:sharp|clear|preserved|normal)"],
    "Edema": [r"(?:pulmonary )?vasculature (?:is |appears )?(?:normal|within normal limits|unremarkable)",
              r"normal pulmonary vascular\w*"],
    "Enlarged Cardiomediastinum": [
        r"cardiomediastinal (?:silhouette|contours?) (?:is |are |appears |remains )?(?:normal|within normal limits|unremarkable|stable)",
        r"normal cardiomediastinal", r"mediastin\w+ (?:contours? |silhouette )?(?:is |are )?(?:normal|within normal limits|unremarkable)",
        # IU X-ray: "The cardiomediastinal silhouette and pulmonary vasculature are within normal limits."
        r"cardiomediastinal (?:silhouette|contours?) and [a-z ]{1,40}? (?:is |are )(?:normal|within normal limits|unremarkable)",
    ],
}

_UNCERTAIN_PRE = re.compile(
    r"\b(?:possible|possibly|cannot (?:be )?exclude(?:d)?|can ?not (?:be )?(?:exclude(?:d)?|ruled? out)|cannot rule out|"
    r"may|might|could|likely|probable|probably|questionable|question of|suspicious for|suspected|suspect|"
    r"concerning for|concern for|suggest(?:s|ive of|ing)?|consider(?:ed)?|equivocal|borderline|indeterminate|"
    r"differential|presumed|uncertain|not excluded|vs\.?|versus|cannot be entirely excluded)\b"
)
_UNCERTAIN_POST = re.compile(
    r"^\W*(?:is |are )?(?:not (?:entirely )?excluded|cannot be (?:entirely )?excluded|(?:is |are )?possible|(?:is |are )?suspected|"
    r"versus|vs\b|\?)"
)
# Temporal phrases with a negation word that say a finding persists ("No significant change in right
# pneumothorax or pleural fluid"): blanked before the negation cues are looked for.
_NO_CHANGE = re.compile(
    r"\b(?:no|without) (?:significant |appreciable |substantial |definite |major |other )?(?:interval )?"
    r"(?:change|increase|decrease|progression|enlargement|worsening|improvement)s? (?:in|of)\b"
    r"(?: (?:the )?(?:size|amount|extent|appearance) of)?")
_NEGATION_PRE = re.compile(
    r"\b(?:no|not|without|negative for|free of|clear of|absence of|resolved|resolution of|removed|removal of|rather than|"
    r"ruled out|rules out|exclude[sd]?|never|nor|neither)\b"
)
_NEGATION_POST = re.compile(
    r"^\W*(?:(?:is|are|has|have)\s+)?(?:(?:now|been)\s+)*(?:absent|resolved|cleared|removed|"
    r"not (?:seen|present|identified|appreciated|evident|visualized|demonstrated)|no longer (?:seen|present|visualized|evident))"
)
# Words that end the reach of a negation or uncertainty cue inside a sentence.
_SCOPE_BREAK = re.compile(r"\b(?:but|however|although|though|while|which|aside from|apart from|except|whereas)\b|[;:]")
# A sentence ends at . ! ? and space, a line break, or a stop run into the next sentence's capital
# ("pneumothorax.No shift"): negation and uncertainty never reach past it.
_SENTENCE = re.compile(r"(?<=[.!?\n])\s+|\n+|(?<=[a-z]{2}\.)(?=[A-Z][a-z])")
# Contexts that make a synonym name something else: an air collection below the diaphragm or in the
# soft tissues is free or subcutaneous air, not a pneumothorax.
_NOT_A_MENTION: dict[str, tuple[re.Pattern, re.Pattern, re.Pattern]] = {
    "Pneumothorax": (
        re.compile(r"air collection"),
        re.compile(r"\b(?:free|subdiaphragmatic|intraperitoneal|extraluminal|subcutaneous|soft[- ]tissue|mediastinal|"
                   r"pericardial|bowel|gastric|abdominal|colonic)\s+(?:[\w-]+\s+)?$"),
        re.compile(r"^\s*(?:[\w-]+\s+){0,3}?(?:below|beneath|under|in)\s+the\s+(?:\w+\s+)?(?:hemidiaphragms?|diaphragm|"
                   r"abdomen|soft tissues?|chest wall|neck|mediastinum)\b"),
    ),
}

_SEVERITY = re.compile(r"\b(trace|tiny|small|mild|minimal|moderate|large|severe|marked|massive|extensive|substantial)\b")
_SIDE = re.compile(r"\b(left|right|bilateral|bibasilar|bibasal|both)\b")

_COMPILED = {label: [re.compile(r"\b" + p) for p in pats] for label, pats in _MENTIONS.items()}
_COMPILED_NORMAL = {label: [re.compile(r"\b" + p) for p in pats] for label, pats in _NORMAL.items()}


@dataclass(frozen=True)
class Mention:
    """One mention of a label in a report."""

    label: str
    status: int  # 1 positive, 0 negative, -1 uncertain
    text: str
    sentence: int
    severity: str | None = None
    side: str | None = None
    start: int = -1  # where the mention lies in its sentence (split_sentences(report)[sentence])
    end: int = -1


def split_sentences(report: str) -> list[str]:
    text = re.sub(r"\b(?:findings|impression|history|comparison|indication|technique)\s*:", "\n", report, flags=re.I)
    return [s.strip() for s in _SENTENCE.split(text) if s and s.strip(" .")]


def find_mentions(report: str) -> list[Mention]:
    """Every label mention in `report` with its status, severity and laterality."""
    mentions: list[Mention] = []
    for si, sentence in enumerate(split_sentences(report)):
        low = sentence.lower()
        taken: list[tuple[int, int]] = []
        for label, patterns in _COMPILED_NORMAL.items():
            for pat in patterns:
                for m in pat.finditer(low):
                    taken.append((m.start(), m.end()))
                    mentions.append(Mention(label, NEGATIVE, m.group(0), si, start=m.start(), end=m.end()))
        for label, patterns in _COMPILED.items():
            spans: list[tuple[int, int]] = []
            for pat in patterns:
                for m in pat.finditer(low):
                    s, e = m.start(), m.end()
                    if any(s < te and ts < e for ts, te in taken + spans):
                        continue  # inside a normality phrase or an overlapping synonym
                    spans.append((s, e))
                    if label == "Support Devices" and "pleural line" in low[max(0, s - 8) : e + 8]:
                        continue
                    if label in _NOT_A_MENTION:
                        which, before, after = _NOT_A_MENTION[label]
                        if which.search(m.group(0)) and (before.search(low[max(0, s - 40) : s])
                                                         or after.match(low[e : e + 60])):
                            continue
                    mentions.append(_classify(label, low, s, e, si))
    return mentions


def _classify(label: str, low: str, start: int, end: int, si: int) -> Mention:
    clause_start = 0
    for b in _SCOPE_BREAK.finditer(low, 0, start):
        clause_start = b.end()
    brk = _SCOPE_BREAK.search(low, end)
    clause_end = brk.start() if brk else len(low)
    before, inside, after = low[clause_start:start], low[start:end], low[end:clause_end]
    before = _NO_CHANGE.sub(" ", before)
    # The cue may sit inside a long mention too: "the heart is possibly enlarged", "is not enlarged".
    if _UNCERTAIN_PRE.search(before + " " + inside) or _UNCERTAIN_POST.search(after):
        status = UNCERTAIN
    elif _NEGATION_PRE.search(before + " " + inside) or _NEGATION_POST.search(after):
        status = NEGATIVE
    else:
        status = POSITIVE
    near = low[max(clause_start, start - 40) : min(clause_end, end + 30)]
    sev = _SEVERITY.search(near)
    side = _SIDE.search(near)
    side_word = side.group(1) if side else None
    if side_word in ("bibasilar", "bibasal", "both"):
        side_word = "bilateral"
    return Mention(label, status, low[start:end], si, sev.group(1) if sev else None, side_word, start, end)


def label_report(report: str) -> dict[str, int | None]:
    """The 14 CheXpert labels of one report: 1, 0, -1, or None when not mentioned."""
    by_label: dict[str, set[int]] = {}
    for m in find_mentions(report or ""):
        by_label.setdefault(m.label, set()).add(m.status)
    out: dict[str, int | None] = {}
    for label in LABELS:
        statuses = by_label.get(label)
        if not statuses:
            out[label] = None
        elif POSITIVE in statuses:
            out[label] = POSITIVE
        elif UNCERTAIN in statuses:
            out[label] = UNCERTAIN
        else:
            out[label] = NEGATIVE
    sick = any(out[label] in (POSITIVE, UNCERTAIN) for label in PATHOLOGIES)
    out["No Finding"] = 0 if sick else 1
    return out


def label_reports(reports: pd.Series | list[str]) -> pd.DataFrame:
    """Label many reports; one nullable Int8 column per label."""
    rows = [label_report(r) for r in reports]
    df = pd.DataFrame(rows, columns=list(LABELS))
    return df.astype("Int8")
