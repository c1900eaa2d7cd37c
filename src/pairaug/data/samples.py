"""A labelled grid of sample images per finding: the quickest visual check of a prepared dataset."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from pairaug.data.images import load_gray
from pairaug.io import atomic_path

GRID_LABELS = ("No Finding", "Cardiomegaly", "Pleural Effusion", "Consolidation", "Edema", "Atelectasis", "Pneumothorax")


def sample_grid(pairs: pd.DataFrame, root: str | Path, out: str | Path, *, labels=GRID_LABELS, per_label: int = 6,
                cell: int = 128) -> None:
    """One row per label: `per_label` train images positive for it (and only it where possible)."""
    root = Path(root)
    train = pairs[pairs["split"] == "train"]
    label_w, pad = 150, 4
    rows = [label for label in labels if label in train and (train[label] == 1).any()]
    canvas = Image.new("L", (label_w + per_label * (cell + pad), max(1, len(rows)) * (cell + pad) + 20), 255)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), "train samples per label (only that finding where possible)", fill=0)
    others = [c for c in labels if c != "No Finding"]
    for r, label in enumerate(rows):
        pos = train[train[label] == 1]
        if label != "No Finding":
            alone = pos[(pos[[c for c in others if c != label and c in pos]].fillna(0) != 1).all(axis=1)]
            pos = alone if len(alone) >= per_label else pos
        y = 20 + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), label, fill=0)
        for k, rel in enumerate(pos["image"].head(per_label)):
            img = Image.fromarray(load_gray(root / rel)).resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(img, (label_w + k * (cell + pad), y))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
