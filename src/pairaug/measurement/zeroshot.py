"""Zero-shot classification, CheXzero's protocol.

For each label: embed a positive prompt ("{label}") and a negative one ("no {label}"), L2-normalised
and averaged over templates; an image's probability is the softmax over its two plain cosine
similarities (no logit scale): p = e^pos / (e^pos + e^neg). AUC per label against the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from pairaug.params import Params


@dataclass
class ZeroShotPrompts(Params):
    positive: list[str] = field(default_factory=lambda: ["{}"])
    negative: list[str] = field(default_factory=lambda: ["no {}"])


def label_prompts(label: str, templates: list[str]) -> list[str]:
    return [t.format(label.lower()) for t in templates]


def class_embeddings(encode_texts, labels: list[str], pos_templates: list[str],
                     neg_templates: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(L, D) positive and negative class embeddings: template means, re-normalised."""
    def mean_embedding(prompts: list[str]) -> np.ndarray:
        e = encode_texts(prompts).mean(axis=0)
        return e / np.linalg.norm(e)

    pos = np.stack([mean_embedding(label_prompts(label, pos_templates)) for label in labels])
    neg = np.stack([mean_embedding(label_prompts(label, neg_templates)) for label in labels])
    return pos, neg


def zero_shot_probs(image_emb: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """(N, L) probabilities that each label is present, from L2-normalised image embeddings."""
    s_pos, s_neg = image_emb @ pos.T, image_emb @ neg.T
    return 1.0 / (1.0 + np.exp(s_neg - s_pos))  # = e^pos / (e^pos + e^neg), numerically stable


def auc_per_label(probs: np.ndarray, targets: dict[str, np.ndarray], labels: list[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for j, label in enumerate(labels):
        y = np.asarray(targets[label]).astype(int)
        out[label] = float(roc_auc_score(y, probs[:, j])) if len(np.unique(y)) == 2 else None
    return out


def roc_points(probs: np.ndarray, targets: dict[str, np.ndarray], labels: list[str], max_points: int = 101) -> list[dict]:
    """ROC curves as rows {label, fpr, tpr} (thinned to `max_points` per label) for DVC plots."""
    rows = []
    for j, label in enumerate(labels):
        y = np.asarray(targets[label]).astype(int)
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, probs[:, j])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
        rows += [{"label": label, "fpr": round(float(fpr[k]), 5), "tpr": round(float(tpr[k]), 5)} for k in keep]
    return rows
