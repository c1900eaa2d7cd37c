"""A linear probe on raw pixels, trained on real images: does a generated image show its report's findings?

It knows nothing about any model of the pipeline, so it is a fair judge of the generator: train it on
real images with their labels, apply it to generated images, and score it against the labels of the
report each image was conditioned on (AUC per label).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

# The labels a generated image is judged on: the findings that are large enough to check at 32 px.
CHECK_LABELS = ("Cardiomegaly", "Pleural Effusion", "Consolidation", "Edema")


class PixelProbe:
    def __init__(self, labels: list[str], C: float = 0.01):
        self.labels, self.C = list(labels), C
        self.models: dict[str, LogisticRegression] = {}

    def _x(self, images: np.ndarray) -> np.ndarray:
        return (images.reshape(len(images), -1).astype(np.float32) / 255.0 - self.mean) / self.std

    def fit(self, images: np.ndarray, targets: dict[str, np.ndarray]) -> PixelProbe:
        flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
        self.mean, self.std = flat.mean(0), flat.std(0) + 1e-3
        x = self._x(images)
        for label in self.labels:
            y = np.asarray(targets[label]).astype(int)
            if len(np.unique(y)) == 2:
                self.models[label] = LogisticRegression(C=self.C, max_iter=2000).fit(x, y)
        return self

    def scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        x = self._x(images)
        return {label: m.decision_function(x) for label, m in self.models.items()}

    def auc(self, images: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, float | None]:
        """AUC per label (None where the targets hold one class only)."""
        s = self.scores(images)
        out: dict[str, float | None] = {}
        for label in self.labels:
            y = np.asarray(targets[label]).astype(int)
            out[label] = float(roc_auc_score(y, s[label])) if label in s and len(np.unique(y)) == 2 else None
        return out


def mean_auc(aucs: dict[str, float | None]) -> float:
    values = [v for v in aucs.values() if v is not None]
    return float(np.mean(values)) if values else float("nan")
