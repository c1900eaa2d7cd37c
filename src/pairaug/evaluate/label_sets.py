"""Label-only evaluation sets (CheXpert, NIH ChestX-ray14) read through the data adapters of `prepare`.

A set is named in `evaluate.label_sets`; its images get the preprocessing of the prepared data (one
gray channel, padded square, resized to the prepared images' size) and its dataset labels are the
ground truth (uncertain or unmentioned = negative, as on the test split). Each model is scored on it
as on the test split: zero-shot, and the linear probe trained on the prepared train split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Annotated, Literal

import numpy as np
import pandas as pd
import torch

from pairaug.data.adapters import iter_chexpert, iter_nih
from pairaug.data.images import fit_square, load_film
from pairaug.data.schema import LABELS
from pairaug.errors import InputError, ParamError
from pairaug.params import Params, Positive


@dataclass
class LabelSetConfig(Params):
    source: Literal["chexpert", "nih"] = "chexpert"
    root: str = ""
    csv_files: list[str] = field(default_factory=lambda: ["valid.csv"])  # CheXpert: which CSVs
    frontal_only: bool = True  # CheXpert
    entries_csv: str = "Data_Entry_2017.csv"  # NIH
    images_dir: str = "images"  # NIH
    max_images: Annotated[int, Positive] | None = None  # the first N images (a quick look at a large set)

    def rules(self) -> None:
        if not self.root:
            raise ParamError("root", "the dataset folder is required")


def load_label_set(cfg: LabelSetConfig, image_size: int) -> tuple[torch.Tensor, pd.DataFrame]:
    """(uint8 images (N, size, size), one row per image: path + the 14 labels)."""
    if cfg.source == "chexpert":
        records = iter_chexpert(cfg.root, csv_files=cfg.csv_files, frontal_only=cfg.frontal_only)
    else:
        records = iter_nih(cfg.root, entries_csv=cfg.entries_csv, images_dir=cfg.images_dir)
    images, rows = [], []
    for rec in islice(records, cfg.max_images):
        try:
            images.append(fit_square(load_film(rec.image), image_size))
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - a decoder failure, reported with the row that named the image
            file, row, col = rec.origin
            raise InputError(f"cannot read image {rec.image}: {type(e).__name__}: {e}", file=file, row=row,
                             field=col) from None
        rows.append({"image": str(rec.image), **{label: (rec.labels or {}).get(label) for label in LABELS}})
    if not rows:
        raise InputError(f"label set has no images ({cfg.source})", file=cfg.root)
    return torch.from_numpy(np.stack(images)), pd.DataFrame(rows)
