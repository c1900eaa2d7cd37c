"""Report text shared by the phantom and the offline rewriter: sentence templates and sentence structure.

Two parts:

- the phantom's report templates (`finding_sentence`, `impression_phrase`, `write_report` and the
  sentence tables): the phantom writes its reports with them, and the rules rewriter uses them when it
  has to state a finding anew, so a rewrite of a phantom report reads like the dataset;
- the structure of free-text reports (`split_report`: sections and sentences with their text kept as
  written, `nonlabel_findings`: findings outside the 14 CheXpert labels, `is_global_normal`: sentences
  that declare the whole study normal), used by the rewriter to edit real reports sentence by sentence
  and by the rewrite metrics to check what a rewrite kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Finding:
    name: str
    severity: str = "moderate"
    side: str | None = None  # right | left | bilateral
    lobe: str | None = None
    hedged: bool = False  # the report states it with uncertainty ("possible ...")



HEART_NORMAL = ("Heart size is normal.", "The cardiac silhouette is normal in size.", "Normal heart size.",
                 "The heart is not enlarged.", "Cardiomediastinal silhouette is within normal limits.")
HEART = {
    "mild": ("The heart is mildly enlarged.", "Mild cardiomegaly.", "Mild enlargement of the cardiac silhouette."),
    "moderate": ("Moderate cardiomegaly.", "The cardiac silhouette is moderately enlarged.", "The heart is moderately enlarged."),
    "large": ("Marked cardiomegaly.", "The heart is severely enlarged.", "Severe enlargement of the cardiac silhouette."),
}
EFFUSION_SEVERITY = {"mild": ("small", "trace", "small"), "moderate": ("moderate",), "large": ("large",)}
EDEMA = {
    "mild": ("Mild pulmonary edema.", "Mild interstitial edema with pulmonary vascular congestion.", "Mild perihilar edema."),
    "moderate": ("Moderate pulmonary edema.", "Moderate bilateral perihilar edema.", "Moderate interstitial pulmonary edema."),
    "large": ("Severe pulmonary edema.", "Severe bilateral alveolar edema.", "Marked pulmonary edema."),
}
NEGATIVE_SENTENCES = {
    "Pleural Effusion": ("No pleural effusion.", "No effusion.", "No pleural fluid."),
    "Pneumothorax": ("No pneumothorax.", "There is no pneumothorax."),
    "Consolidation": ("No focal consolidation.", "No consolidation.", "No airspace consolidation."),
    "Edema": ("No pulmonary edema.", "No edema.", "No vascular congestion or edema."),
    "Atelectasis": ("No atelectasis.", "No volume loss or atelectasis."),
}
NORMAL_IMPRESSIONS = ("No acute cardiopulmonary process.", "No acute cardiopulmonary abnormality.",
                      "Normal chest radiograph.", "No acute intrathoracic process.")
HEDGES = ("Possible {x}.", "Cannot exclude {x}.", "Findings may represent {x}.", "Questionable {x}.")


def _side_phrase(side: str | None) -> str:
    return {"bilateral": "bilateral", "left": "left", "right": "right"}.get(side or "", "")


def finding_sentence(f: Finding, rng: np.random.Generator) -> str:
    """One FINDINGS sentence describing `f` in the phantom's words."""
    c = lambda options: str(rng.choice(options))  # noqa: E731
    side = _side_phrase(f.side)
    if f.name == "Cardiomegaly":
        text = c(HEART[f.severity])
        if f.hedged:
            return c(HEDGES).format(x="mild cardiomegaly")
        return text
    if f.name == "Pleural Effusion":
        sev = c(EFFUSION_SEVERITY[f.severity])
        noun = "pleural effusions" if f.side == "bilateral" else c(("pleural effusion", "pleural effusion", "effusion"))
        core = f"{sev} {side} {noun}".replace("  ", " ")
        if f.hedged:
            return c(HEDGES).format(x=core)
        tmpl = c(("{Core}.", "There is a {core}.", "{Core} with blunting of the costophrenic angle."))
        if f.side == "bilateral":
            tmpl = c(("{Core}.", "There are {core}."))
        return tmpl.format(core=core, Core=core[0].upper() + core[1:])
    if f.name == "Consolidation":
        sev = {"mild": "patchy", "moderate": "focal", "large": "dense"}[f.severity]
        core = f"{sev} consolidation in the {side} {f.lobe} lobe"
        if f.hedged:
            return c(HEDGES).format(x=f"{side} {f.lobe} lobe consolidation")
        return c(("{Core}.", "There is {core}.", "{Core}, concerning for pneumonia.")).format(
            core=core, Core=core[0].upper() + core[1:])
    if f.name == "Edema":
        if f.hedged:
            return c(HEDGES).format(x="mild pulmonary edema")
        return c(EDEMA[f.severity])
    if f.name == "Atelectasis":
        sev = {"mild": "minimal", "moderate": "plate-like", "large": "extensive"}[f.severity]
        core = f"{sev} {side} basilar atelectasis"
        if f.hedged:
            return c(HEDGES).format(x=f"{side} basilar atelectasis")
        return c(("{Core}.", "{Core} with volume loss.", "There is {core}.")).format(
            core=core, Core=core[0].upper() + core[1:])
    if f.name == "Pneumothorax":
        sev = {"mild": "small", "moderate": "moderate", "large": "large"}[f.severity]
        core = f"{sev} {side} apical pneumothorax"
        if f.hedged:
            return c(HEDGES).format(x=f"small {side} pneumothorax")
        return c(("{Core}.", "There is a {core}.", "{Core} with a visible pleural line.")).format(
            core=core, Core=core[0].upper() + core[1:])
    raise ValueError(f"unknown finding {f.name}")


def impression_phrase(f: Finding) -> str:
    side = _side_phrase(f.side)
    sev = {"mild": "mild", "moderate": "moderate", "large": "severe"}[f.severity]
    text = {
        "Cardiomegaly": f"{sev} cardiomegaly",
        "Pleural Effusion": f"{side} pleural effusion{'s' if f.side == 'bilateral' else ''}",
        "Consolidation": f"{side} {f.lobe} lobe consolidation",
        "Edema": f"{sev} pulmonary edema",
        "Atelectasis": f"{side} basilar atelectasis",
        "Pneumothorax": f"{side} pneumothorax",
    }[f.name]
    return ("possible " + text) if f.hedged else text


def write_report(findings: list[Finding], rng: np.random.Generator) -> str:
    """A two-section report: FINDINGS (positives, then a few explicit negatives) and IMPRESSION."""
    present = {f.name for f in findings}
    order = list(findings)
    rng.shuffle(order)
    sentences = [finding_sentence(f, rng) for f in order]
    if "Cardiomegaly" not in present:
        sentences.insert(int(rng.integers(0, 2)) if sentences else 0, str(rng.choice(HEART_NORMAL)))
    absent = [name for name in NEGATIVE_SENTENCES if name not in present]
    rng.shuffle(absent)
    n_neg = min(len(absent), int(rng.integers(2, 4)))
    negs = absent[:n_neg]
    if "Pleural Effusion" in negs and "Pneumothorax" in negs and rng.random() < 0.6:
        negs = [n for n in negs if n not in ("Pleural Effusion", "Pneumothorax")]
        sentences.append(str(rng.choice(("No pleural effusion or pneumothorax.", "No effusion or pneumothorax."))))
    if "Consolidation" in negs and rng.random() < 0.5:
        rest = [n for n in negs if n in ("Pleural Effusion", "Pneumothorax")]
        if rest:
            negs = [n for n in negs if n not in ("Consolidation", *rest)]
            sentences.append("No focal consolidation, " + " or ".join(_lower_name(n) for n in rest) + ".")
    sentences += [str(rng.choice(NEGATIVE_SENTENCES[n])) for n in negs]
    if not findings and rng.random() < 0.7:
        sentences.append(str(rng.choice(("The lungs are clear.", "Lungs are well expanded and clear."))))
    if findings:
        phrases = [impression_phrase(f) for f in order]
        impression = _join(phrases)
        impression = impression[0].upper() + impression[1:] + "."
    else:
        impression = str(rng.choice(NORMAL_IMPRESSIONS))
    return "FINDINGS: " + " ".join(sentences) + " IMPRESSION: " + impression


def _lower_name(name: str) -> str:
    return name.lower()


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ---------------------------------------------------------------- the structure of free-text reports

# Section headers of MIMIC-CXR / IU X-ray / CheXpert-style reports, kept as written in the output.
_HEADER = re.compile(
    r"\b(?:FINAL REPORT|EXAMINATION|EXAM|INDICATION|CLINICAL (?:HISTORY|INFORMATION)|HISTORY|REASON FOR "
    r"(?:EXAM(?:INATION)?|STUDY)|TECHNIQUE|COMPARISONS?|FINDINGS|IMPRESSIONS?|CONCLUSIONS?|NOTIFICATION|"
    r"RECOMMENDATIONS?)\s*:", re.I)
# Sections that describe the study rather than the patient's findings.
CONTEXT_SECTIONS = frozenset({"FINAL REPORT", "EXAMINATION", "EXAM", "INDICATION", "CLINICAL HISTORY",
                              "CLINICAL INFORMATION", "HISTORY", "REASON FOR EXAM", "REASON FOR EXAMINATION",
                              "REASON FOR STUDY", "TECHNIQUE", "COMPARISON", "COMPARISONS", "NOTIFICATION",
                              "RECOMMENDATION", "RECOMMENDATIONS"})
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
_ENUMERATOR = re.compile(r"^(?:\d{1,2}[.)]|[-*•])$")


@dataclass
class Section:
    """One section of a report: its header as written ("FINDINGS:", or "" before any header) and sentences."""

    header: str
    sentences: list[str]

    @property
    def name(self) -> str:
        """The header's name in upper case without the colon ("IMPRESSION"); "" for no header."""
        return " ".join(self.header.rstrip(": ").upper().split())


def split_report(report: str) -> list[Section]:
    """The report's sections and sentences, each sentence's text as written (whitespace collapsed).

    Sentences end at . ! ? followed by space, or at a blank line; a list number ("1.") stays with the
    sentence it numbers; decimals ("1.5 cm") and de-identification tokens ("___") are left alone.
    """
    sections: list[Section] = []
    pos, header = 0, ""
    for m in [*_HEADER.finditer(report), None]:
        end = m.start() if m is not None else len(report)
        body = report[pos:end]
        sentences = _sentences(body)
        if sentences or header:
            sections.append(Section(header, sentences))
        if m is not None:
            header, pos = " ".join(m.group(0).split()), m.end()
    return sections


def _sentences(body: str) -> list[str]:
    out: list[str] = []
    carry = ""
    for piece in _SENTENCE_BREAK.split(body):
        text = " ".join((piece or "").split())
        if not text:
            continue
        if _ENUMERATOR.match(text):
            carry = f"{carry} {text}".strip()
            continue
        out.append(f"{carry} {text}".strip() if carry else text)
        carry = ""
    if carry:
        out.append(carry)
    return out


def join_report(sections: list[Section]) -> str:
    """The report text of `sections`; a section left without sentences is left out with its header."""
    parts = []
    for s in sections:
        if not s.sentences:
            continue
        parts.append(" ".join([s.header, *s.sentences]).strip() if s.header else " ".join(s.sentences))
    return " ".join(parts)


def normalise(text: str) -> str:
    """A sentence for comparison: whitespace collapsed, case kept (a kept sentence is kept as written)."""
    return " ".join(text.split())


# Findings outside the 14 CheXpert labels: chronic, incidental and post-surgical findings that a
# rewrite has to keep. Canonical name -> pattern (lower case text).
NONLABEL_FINDINGS: dict[str, str] = {
    "granuloma": r"granulomas?\b|granulomatous",
    "emphysema": r"emphysema\w*|\bcopd\b|hyperinfla\w+|hyperexpan\w+|bullae\b|bulla\b|bullous|blebs?\b",
    "hernia": r"hernias?\b",
    "sternotomy": r"sternotomy|\bcabg\b",
    "scoliosis": r"scoliosis|scoliotic|kyphosis|kyphotic|kyphoplasty|vertebroplasty",
    "clips": r"\bclips?\b|\bstaples\b|\bcoils?\b",
    "degenerative": r"degenerative|spondylo\w+|osteophyt\w+|osteoarthrit\w+",
    "calcification": r"calcifi\w+",
    "aorta": r"tortu\w+|ectatic|unfolded|atherosclero\w+|aortic (?:knob|arch) (?:is )?(?:prominent|enlarged)",
    "scarring": r"\bscar(?:ring|s)?\b|fibros\w+|fibrotic",
    "bronchiectasis": r"bronchiectas\w+",
    "adenopathy": r"adenopathy|lymphadenopathy",
    "surgery": r"ectomy\b|lobectomy|pneumonectomy|mastectomy|cholecystectomy|post-?surgical|postoperative|"
               r"status post|\bs/p\b",
    "hemidiaphragm": r"elevat\w+ (?:of the )?(?:left |right )?hemidiaphragm|hemidiaphragm\w* (?:is |are )?elevated|"
                     r"eventration",
    "interstitial": r"interstitial (?:markings|lung disease|abnormalit\w+|prominence|process|fibrosis)|"
                    r"reticular|reticulonodular|honeycomb\w*",
    "hardware": r"hardware|prosthe\w+|valve replacement|loop recorder|orthopedic|fixation",
    "free air": r"pneumoperitoneum|free (?:intraperitoneal |subdiaphragmatic )?air",
    "cavity": r"cavit\w+",
    "osteopenia": r"osteopeni\w+|demineraliz\w+|compression (?:deformit|fracture)\w*",
    "low lung volumes": r"low lung volumes?|hypoinflat\w+",
    "thyroid": r"thyroid|goiter",
    "pectus": r"pectus",
}
_NONLABEL = {name: re.compile(pattern) for name, pattern in NONLABEL_FINDINGS.items()}


def nonlabel_findings(text: str) -> set[str]:
    """Canonical names of the findings outside the 14 labels that `text` mentions (stated or denied)."""
    low = text.lower()
    return {name for name, pattern in _NONLABEL.items() if pattern.search(low)}


# Sentences that declare a whole study, or all of the lungs, normal: each with the labels it denies
# (a new finding among those would contradict the sentence). "Otherwise" limits the claim to the rest.
_ACUTE = ("Lung Opacity", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion")
_LUNG = ("Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis")
_ALL = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
        "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture")
_GLOBAL_NORMAL = [
    (re.compile(r"\bnormal (?:chest|study|exam\w*|radiograph\w*|chest (?:radiograph|x-?ray|film|study))\b|"
                r"\bunremarkable (?:chest|study|exam\w*|radiograph)|\bno (?:radiographic )?abnormalit"), _ALL),
    (re.compile(r"\bno (?:radiographic )?(?:evidence of )?(?:an )?(?:acute|active) (?:\w+ )?(?:process|abnormalit\w+|"
                r"disease|findings?|pathology|changes?)|\bno acute findings\b"), _ACUTE),
    (re.compile(r"\blungs? (?:are |is |appear |remain )?(?:\w+ )?(?:and )?(?:well[- ]expanded and )?clear\b|"
                r"\bclear lungs\b"), _LUNG),
]


def global_normal_scope(sentence: str) -> frozenset[str]:
    """The labels `sentence` denies by declaring the study or the lungs normal; empty when it does not."""
    low = sentence.lower()
    if "otherwise" in low or "except" in low:
        return frozenset()
    out: set[str] = set()
    for pattern, labels in _GLOBAL_NORMAL:
        if pattern.search(low):
            out.update(labels)
    return frozenset(out)


# Temporal language: how a finding changed since the prior study.
TEMPORAL = re.compile(
    r"\b(?:unchanged|stable|stably|persistent|persists|persisting|again (?:seen|noted|demonstrated)|"
    r"redemonstrat\w+|similar|no (?:significant |appreciable |substantial )?(?:interval )?change (?:in|of)|"
    r"not significantly changed|new|newly|increas\w+|decreas\w+|improv\w+|worsen\w+|progress\w+|"
    r"resolv\w+|interval|slightly|since (?:the )?(?:prior|previous) (?:study|exam\w*|radiograph))\b", re.I)


def normalize_text(text: object) -> str:
    """A report compared as text: case and runs of whitespace ignored (a "rewrite" equal to its source
    under this is no rewrite)."""
    return re.sub(r"\s+", " ", str(text)).strip().lower()
