"""The one manifest schema every stage reads (DESIGN.md, "Data contracts").

`pairs.parquet`: one row per image-report pair; `image` is relative to the manifest's folder; one
column per CheXpert label holding 1 (positive), 0 (negative), -1 (uncertain) or null (not mentioned).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.errors import InputError

LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
# The five CheXpert competition labels: zero-shot AUC is averaged over these (CheXzero).
COMPETITION_LABELS: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
SPLITS: tuple[str, ...] = ("train", "valid", "test")

PAIR_COLUMNS: tuple[str, ...] = (
    "pair_id", "patient_id", "study_id", "split", "image", "report", "view", *LABELS, "label_source",
)
LABEL_VALUES = {1, 0, -1}


def empty_labels() -> dict[str, object]:
    return {label: pd.NA for label in LABELS}


def label_states(values: pd.Series) -> np.ndarray:
    """Each label's meaning: 1 positive, -1 uncertain, 0 absent (negative and not mentioned both read as absent)."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return np.where(v == 1, 1, np.where(v == -1, -1, 0))


def pairs_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → a frame with the schema's column order and dtypes (labels as nullable Int8)."""
    df = pd.DataFrame(rows, columns=list(PAIR_COLUMNS))
    for col in ("pair_id", "patient_id", "study_id", "split", "image", "report", "view", "label_source"):
        df[col] = df[col].astype("string")
    for label in LABELS:
        df[label] = df[label].astype("Int8")
    return df


def validate_pairs(df: pd.DataFrame, path: str | Path, *, require_report: bool = True) -> pd.DataFrame:
    """Check a pairs manifest; raise InputError naming the file, row and field of the first problem."""
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"missing required column '{missing[0]}'", file=path, field=missing[0])
    for col in ("pair_id", "patient_id", "split", "image"):
        bad = df[col].isna() | (df[col].astype("string").str.strip() == "")
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise InputError(f"empty {col}", file=path, row=row, field=col)
    dup = df["pair_id"].duplicated()
    if dup.any():
        row = int(dup.to_numpy().nonzero()[0][0])
        raise InputError(f"duplicate pair_id {df['pair_id'].iloc[row]!r}", file=path, row=row, field="pair_id")
    bad_split = ~df["split"].isin(SPLITS)
    if bad_split.any():
        row = int(bad_split.to_numpy().nonzero()[0][0])
        raise InputError(f"split must be one of {SPLITS}, got {df['split'].iloc[row]!r}", file=path, row=row, field="split")
    if require_report:
        bad = df["report"].isna() | (df["report"].astype("string").str.strip() == "")
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise InputError("empty report", file=path, row=row, field="report")
    for label in LABELS:
        values = df[label].dropna()
        bad = ~values.isin(LABEL_VALUES)
        if bad.any():
            row = int(values.index[bad.to_numpy().nonzero()[0][0]])
            raise InputError(f"label must be 1, 0, -1 or empty, got {values[row]!r}", file=path, row=row, field=label)
    leaked = df.groupby("patient_id")["split"].nunique()
    if (leaked > 1).any():
        patient = leaked[leaked > 1].index[0]
        row = int((df["patient_id"] == patient).to_numpy().nonzero()[0][0])
        raise InputError(f"patient {patient!r} appears in more than one split", file=path, row=row, field="split")
    return df


def read_pairs(path: str | Path, *, require_report: bool = True) -> pd.DataFrame:
    """Read and validate `pairs.parquet`."""
    path = Path(path)
    if not path.exists():
        raise InputError("manifest not found (run `dvc repro prepare` or `dvc pull prepare`)", file=path)
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {e}", file=path) from None
    return validate_pairs(df, path, require_report=require_report)
