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
