"""Chest X-ray reports in the style of MIMIC-CXR and IU X-ray (OpenI), written for these tests.

No credentialed data: every report here was written by hand to look like the public datasets'
wording (section headers, de-identification tokens "___", devices, temporal language, findings
outside the 14 labels). Used by the rewriter and labeler tests.
"""

REPORTS: list[str] = [
    # MIMIC-CXR style
    "EXAMINATION: CHEST (PORTABLE AP) INDICATION: ___ year old man with shortness of breath. COMPARISON: ___. "
    "FINDINGS: Endotracheal tube terminates 4 cm above the carina. Nasogastric tube courses below the diaphragm. "
    "Heart is large. Small left pleural effusion. No pneumothorax. IMPRESSION: Small left pleural effusion.",
    "FINDINGS: Right PICC removed. Lungs are clear. No large pleural effusion. Heart size is normal. "
    "IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: COPD with hyperinflated lungs. 1.5 cm right upper lobe nodule, unchanged. Degenerative changes of the "
    "thoracic spine. No focal consolidation. Heart size is normal. IMPRESSION: Emphysema. Stable nodule.",
    "FINDINGS: 2 cm nodular density in the left upper lobe suspicious for malignancy. Calcified granuloma in the "
    "right lower lobe. No pleural effusion. IMPRESSION: Left upper lobe nodule, CT recommended.",
    "FINDINGS: No significant change in right pneumothorax or pleural fluid. Right chest tube in place. "
    "Median sternotomy wires are intact. IMPRESSION: Unchanged small right pneumothorax.",
    "INDICATION: Fever. COMPARISON: Chest radiograph ___. FINDINGS: New patchy opacity in the right lower lobe, "
    "concerning for pneumonia. Heart size is normal. Small hiatal hernia. No pneumothorax. "
    "IMPRESSION: Right lower lobe pneumonia.",
    "FINDINGS: Moderate pulmonary edema, increased since the prior study. Moderate cardiomegaly. Bilateral pleural "
    "effusions. Left subclavian pacemaker leads in standard position. IMPRESSION: Worsening heart failure.",
    "FINDINGS: Status post median sternotomy and CABG. Mild cardiomegaly. Mild bibasilar atelectasis. "
    "No pleural effusion or pneumothorax. IMPRESSION: Bibasilar atelectasis.",
    "COMPARISON: ___. FINDINGS: The lungs are hyperexpanded, consistent with emphysema. No focal consolidation. "
    "No pleural effusion. The cardiomediastinal silhouette is normal. IMPRESSION: Emphysema, no acute process.",
    "FINDINGS: Left lower lobe consolidation. Moderate left pleural effusion. Right IJ catheter tip in the low SVC. "
    "Surgical clips in the right upper quadrant. IMPRESSION: Left lower lobe pneumonia with parapneumonic effusion.",
    "FINDINGS: Large right pleural effusion with adjacent atelectasis. Heart size cannot be assessed. No "
    "pneumothorax. IMPRESSION: Large right pleural effusion.",
    "FINDINGS: Lung volumes are low. Mild pulmonary vascular congestion. Heart size is mildly enlarged. No focal "
    "consolidation. Old healed left rib fractures. IMPRESSION: Mild vascular congestion.",
    "FINDINGS: Interval resolution of the right lower lobe opacity. No pleural effusion. Mild scoliosis. "
    "Heart size is normal. IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Tracheostomy tube in place. Patchy opacities at both lung bases, likely atelectasis. Small bilateral "
    "pleural effusions. Mild cardiomegaly. IMPRESSION: Bibasilar opacities, likely atelectasis.",
    # IU X-ray (OpenI) style
    "FINDINGS: The heart is normal in size. The mediastinum is unremarkable. The lungs are clear. There is no "
    "pneumothorax or pleural effusion. IMPRESSION: No acute disease.",
    "FINDINGS: The cardiomediastinal silhouette and pulmonary vasculature are within normal limits. Calcified "
    "granuloma in the left upper lobe. No focal airspace disease. No pleural effusion. IMPRESSION: No active disease.",
    "FINDINGS: Heart size is normal. Lungs are hyperinflated with flattening of the diaphragms. No focal "
    "consolidation. Degenerative changes of the spine. IMPRESSION: COPD. No acute findings.",
    "FINDINGS: There is a moderate right pleural effusion. Right basilar opacity may represent atelectasis. "
    "Heart size is top normal. IMPRESSION: Moderate right pleural effusion.",
    "FINDINGS: The heart is enlarged. There is mild interstitial edema. No large pleural effusions. Aortic "
    "atherosclerotic calcification. IMPRESSION: Cardiomegaly with mild edema.",
    "FINDINGS: Post-surgical changes of left mastectomy. The lungs are clear. Heart size is normal. No "
    "pneumothorax. Mild thoracic scoliosis. IMPRESSION: No acute cardiopulmonary abnormality.",
    "FINDINGS: Normal heart size. Right upper lobe consolidation. No pleural effusion. No pneumothorax. "
    "Stable elevation of the right hemidiaphragm. IMPRESSION: Right upper lobe pneumonia.",
    "FINDINGS: There is a small left apical pneumothorax. Left chest tube in place. Subcutaneous emphysema in the "
    "left chest wall. No pleural effusion. IMPRESSION: Small left pneumothorax.",
    "FINDINGS: Stable moderate cardiomegaly. Sternotomy wires and prosthetic valve. Small bilateral pleural "
    "effusions, unchanged. No edema. IMPRESSION: Stable cardiomegaly and small effusions.",
    "FINDINGS: Heart is large. Tortuous aorta. No focal consolidation, pleural effusion or pneumothorax. "
    "IMPRESSION: Cardiomegaly without acute pulmonary process.",
]


# ---------------------------------------------------------------- long de-identified reports
#
# IU X-ray (OpenI) style: "XXXX" where the de-identification removed a word, an IMPRESSION that
# restates the findings, often as a numbered list; every report is longer than 50 words, so a rewrite
# to 50 words must cut. Written by hand for these tests.

LONG_REPORTS: list[str] = [
    "EXAMINATION: Chest PA and lateral. INDICATION: XXXX-year-old male with shortness of breath. COMPARISON: XXXX. "
    "FINDINGS: Cardiac size remains mildly enlarged. There is a small left pleural effusion. The mediastinum is "
    "unremarkable. There is no pneumothorax. Degenerative changes of the thoracic spine. IMPRESSION: 1. Stable "
    "mild cardiomegaly. 2. Small left pleural effusion. 3. No pneumothorax.",
    "EXAMINATION: Chest PA and lateral. INDICATION: XXXX pain. COMPARISON: Chest radiograph XXXX. FINDINGS: Heart size XXXX large. Pulmonary "
    "vascular congestion with mild interstitial edema. Small bilateral pleural effusions. No focal airspace "
    "consolidation. No pneumothorax. The XXXX are intact. Tortuous thoracic aorta. IMPRESSION: 1. Cardiomegaly with "
    "mild pulmonary edema. "
    "2. Small bilateral pleural effusions.",
    "EXAMINATION: PA and lateral chest. INDICATION: XXXX-year-old female, XXXX. FINDINGS: There is a large right "
    "pleural air collection. There is partial collapse of the right lung. No substantial mediastinal shift. The "
    "heart is normal in size. The left lung is clear. No pleural effusion. The XXXX are intact. IMPRESSION: 1. "
    "Large right pneumothorax. 2. Partial collapse of the right lung. 3. No substantial mediastinal shift.",
    "COMPARISON: XXXX, XXXX. FINDINGS: The cardiac silhouette is again noted to be enlarged. Calcified granuloma in "
    "the right upper lobe. Streaky opacities in the left lung base, likely atelectasis. No pleural effusion or "
    "pneumothorax. Visualized osseous structures are intact. Pulmonary vascularity is within normal limits. "
    "IMPRESSION: 1. Cardiomegaly. 2. Left basilar atelectasis. 3. Old granulomatous disease.",
    "INDICATION: Fever and cough. COMPARISON: None. FINDINGS: Focal airspace consolidation in the right lower lobe. "
    "Heart size is within normal limits. The mediastinum is unremarkable. No pleural effusion. No pneumothorax. "
    "Pulmonary vascularity is within normal limits. "
    "Mild thoracic scoliosis. The XXXX are intact. IMPRESSION: 1. Right lower lobe consolidation, XXXX "
    "pneumonia. 2. No pleural effusion.",
    "EXAMINATION: Chest, 2 views. INDICATION: Chest pain. FINDINGS: Left-sided pacemaker with leads in the right "
    "atrium and right ventricle. The heart is moderately enlarged. The lungs are clear. There is no pneumothorax "
    "or pleural effusion. Aortic atherosclerotic calcification. IMPRESSION: 1. Moderate cardiomegaly. 2. "
    "Pacemaker leads in XXXX position. 3. No acute pulmonary disease.",
    "INDICATION: XXXX-year-old with XXXX. COMPARISON: XXXX. FINDINGS: There is a small right apical "
    "pneumothorax, XXXX unchanged. Right chest tube in place. Subcutaneous emphysema in the right chest wall. "
    "Heart size is normal. No pleural effusion. IMPRESSION: 1. Small right apical pneumothorax, unchanged. 2. "
    "Right chest tube in place. 3. Subcutaneous emphysema.",
    "EXAMINATION: Chest PA and lateral. INDICATION: Cough. COMPARISON: XXXX. FINDINGS: Low lung volumes. Bibasilar "
    "atelectasis. "
    "Heart size XXXX within normal limits. No focal consolidation. No pleural effusion or pneumothorax. The XXXX "
    "are unremarkable. Mild degenerative changes of the spine. IMPRESSION: 1. Low lung volumes with bibasilar "
    "atelectasis. 2. No acute infiltrate.",
    "INDICATION: Weakness. FINDINGS: There is a 1.5 cm nodule in the right upper lobe. The heart is normal in "
    "size. The mediastinum is unremarkable. The lungs are otherwise clear. No pleural effusion. No pneumothorax. "
    "The XXXX are intact. IMPRESSION: 1. Right upper lobe nodule, CT recommended. 2. Otherwise no acute "
    "cardiopulmonary disease.",
    "INDICATION: XXXX-year-old female with dyspnea. COMPARISON: XXXX. FINDINGS: Moderate bilateral pleural "
    "effusions, right greater than left. The cardiac "
    "silhouette is enlarged. Diffuse interstitial opacities consistent with pulmonary edema. Median sternotomy "
    "XXXX. No pneumothorax. The mediastinum is unremarkable. IMPRESSION: 1. Moderate bilateral pleural "
    "effusions. 2. Cardiomegaly. 3. Pulmonary edema, increased since XXXX.",
    "EXAMINATION: Chest PA and lateral. INDICATION: XXXX. COMPARISON: XXXX. FINDINGS: Collapse of the right middle "
    "lobe. The heart "
    "size is normal. No pleural effusion. There is no pneumothorax. Healed left posterior rib fractures. "
    "The mediastinum is unremarkable. IMPRESSION: 1. Right middle lobe collapse. 2. Old left rib fractures. 3. "
    "No pneumothorax.",
    "INDICATION: Dyspnea. COMPARISON: XXXX. FINDINGS: Right IJ central venous catheter tip in the distal SVC. "
    "Patchy opacity in the left lower lobe. Heart size XXXX large. No pneumothorax. No large pleural effusions. "
    "IMPRESSION: 1. Left lower lobe opacity, XXXX atelectasis or pneumonia. 2. Cardiomegaly. 3. Right IJ "
    "catheter in XXXX position.",
]


_CONTEXT = [
    "EXAMINATION: Chest PA and lateral.", "EXAMINATION: PA and lateral chest.", "EXAMINATION: Chest, 2 views.",
    "INDICATION: XXXX-year-old male with shortness of breath.", "INDICATION: XXXX-year-old female with chest pain.",
    "INDICATION: Cough.", "INDICATION: XXXX pain.", "INDICATION: Preoperative evaluation.",
    "COMPARISON: XXXX.", "COMPARISON: Chest radiograph XXXX.", "COMPARISON: None.", "COMPARISON: XXXX, XXXX.",
]
# (FINDINGS sentence, IMPRESSION phrase, labels it states positive or uncertain)
_POSITIVE = [
    ("Cardiac size remains mildly enlarged.", "Stable mild cardiomegaly", {"Cardiomegaly"}),
    ("Heart size XXXX large.", "Cardiomegaly", {"Cardiomegaly"}),
    ("The cardiac silhouette is again noted to be enlarged.", "Cardiomegaly", {"Cardiomegaly"}),
    ("The heart is moderately enlarged.", "Moderate cardiomegaly", {"Cardiomegaly"}),
    ("There is a small left pleural effusion.", "Small left pleural effusion", {"Pleural Effusion"}),
    ("Moderate bilateral pleural effusions, right greater than left.", "Bilateral pleural effusions",
     {"Pleural Effusion"}),
    ("Blunting of the right costophrenic angle.", "Small right pleural effusion", {"Pleural Effusion"}),
    ("Pulmonary vascular congestion with mild interstitial edema.", "Mild pulmonary edema", {"Edema"}),
    ("Cephalization of the pulmonary vasculature, XXXX mild edema.", "Mild edema", {"Edema"}),
    ("There is a small right apical pneumothorax.", "Small right pneumothorax", {"Pneumothorax"}),
    ("There is a large right pleural air collection.", "Large right pneumothorax", {"Pneumothorax"}),
    ("XXXX left apical air collection.", "Left apical pneumothorax", {"Pneumothorax"}),
    ("Mild bibasilar atelectasis.", "Bibasilar atelectasis", {"Atelectasis"}),
    ("Collapse of the right middle lobe.", "Right middle lobe collapse", {"Atelectasis"}),
    ("Linear opacity in the right base, consistent with subsegmental atelectasis.", "Right basilar atelectasis",
     {"Atelectasis", "Lung Opacity"}),
    ("Focal airspace consolidation in the right lower lobe.", "Right lower lobe consolidation", {"Consolidation"}),
    ("Left lower lobe consolidation concerning for pneumonia.", "Left lower lobe pneumonia",
     {"Consolidation", "Pneumonia"}),
    ("Patchy opacity in the lingula.", "Lingular opacity", {"Lung Opacity"}),
    ("There is a 1 cm nodule in the right upper lobe.", "Right upper lobe nodule", {"Lung Lesion"}),
    ("Healed left posterior rib fractures.", "Old left rib fractures", {"Fracture"}),
    ("The mediastinum is widened.", "Widened mediastinum", {"Enlarged Cardiomediastinum"}),
    ("Right IJ central venous catheter tip in the distal SVC.", "Right IJ catheter in place", {"Support Devices"}),
    ("Left-sided pacemaker with leads in the right atrium and right ventricle.", "Pacemaker in place",
     {"Support Devices"}),
    ("Left apical pleural thickening.", "Left apical pleural thickening", {"Pleural Other"}),
]
# (sentence, labels it states negative); a composed report never negates a label it states present.
_NEGATIVE = [
    ("The heart is normal in size.", {"Cardiomegaly"}), ("Heart size XXXX within normal limits.", {"Cardiomegaly"}),
    ("The mediastinum is unremarkable.", {"Enlarged Cardiomediastinum"}),
    ("There is no pneumothorax or pleural effusion.", {"Pneumothorax", "Pleural Effusion"}),
    ("No focal airspace consolidation.", {"Consolidation"}), ("No pulmonary edema.", {"Edema"}),
    ("No XXXX of pneumonia.", {"Pneumonia"}), ("No pleural effusion.", {"Pleural Effusion"}),
    ("There is no pneumothorax.", {"Pneumothorax"}), ("No large pleural effusions.", {"Pleural Effusion"}),
    ("The costophrenic angles are sharp.", {"Pleural Effusion"}),
    ("Pulmonary vascularity is within normal limits.", {"Edema"}),
]
_OTHER = [
    "Degenerative changes of the thoracic spine.", "Calcified granuloma in the right upper lobe.",
    "Mild thoracic scoliosis.", "Aortic atherosclerotic calcification.", "The XXXX are intact.",
    "Visualized osseous structures of the thorax are without acute abnormality.", "Median sternotomy XXXX.",
    "Surgical clips in the right upper quadrant.", "Tortuous thoracic aorta.",
]


def long_reports(n: int = 120, seed: int = 0) -> list[str]:
    """`n` long real-style reports composed from the hand-written sentences above (deterministic).

    Each has context sections, one to four positive findings, negative and other statements, and an
    IMPRESSION restating the findings (a numbered list in two of three); each is over 50 words.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        findings = [_POSITIVE[i] for i in rng.choice(len(_POSITIVE), int(rng.integers(1, 5)), replace=False)]
        present = set().union(*(f[2] for f in findings))
        if len({f[0] for f in findings if "Cardiomegaly" in f[2]}) > 1:
            continue
        negatives = [s for s, labels in _NEGATIVE if not labels & present]
        negatives = [negatives[i] for i in rng.permutation(len(negatives))[: int(rng.integers(2, 6))]]
        if len({s for s in negatives if "heart" in s.lower()}) > 1 or len({s for s in negatives if "effusion" in s}) > 1:
            continue
        other = [_OTHER[i] for i in rng.choice(len(_OTHER), int(rng.integers(0, 3)), replace=False)]
        context = [c for c in _CONTEXT if rng.random() < 0.35]
        context = list({c.split(":")[0]: c for c in context}.values())  # one of each section
        body = [f[0] for f in findings] + negatives + other
        body = [body[i] for i in [*range(len(findings)), *(len(findings) + rng.permutation(len(body) - len(findings)))]]
        items = [f[1] for f in findings]
        if rng.random() < 0.5 and "Pneumothorax" not in present:
            items.append("No pneumothorax")
        if rng.random() < 2 / 3:
            impression = " ".join(f"{i + 1}. {item}." for i, item in enumerate(items))
        else:
            impression = ". ".join(items) + "."
        report = " ".join([*context, "FINDINGS:", *body, "IMPRESSION:", impression])
        if len(report.split()) > 50:
            out.append(report)
    return out
