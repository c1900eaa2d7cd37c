"""Per-row facts about the pruned pairs that the Great Expectations suite states rules on.

GX's pandas expectations see one DataFrame; facts that need the file system or a join with the real
pairs are computed here as plain columns (did the image decode, its size, does its sha256 match, the
split of its source pair, did the labels change ...). The rules themselves — which values are allowed,
for which branch, how often — live only in the declarative suite (gx/expectations/pruned_pairs.json).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pairaug.data.images import load_gray
from pairaug.data.report_text import normalize_text
from pairaug.data.schema import LABELS, label_states
from pairaug.hashing import file_digest
from pairaug.measurement.edit_readout import reads_new
from pairaug.measurement.pixel_probe import PixelProbe

CHECK_COLUMNS: tuple[str, ...] = (
    "word_count", "image_exists", "image_decodes", "image_mode", "image_height", "image_width",
    "expected_height", "expected_width", "sha256_matches", "identical_to_source", "label_changed",
    "source_split", "patient_split", "patient_matches_source", "change_read",
)


def image_facts(path: Path) -> dict:
    """exists / decodes / mode / size / sha256 of one file; later facts are null when an earlier one fails."""
    facts: dict = {"exists": path.is_file(), "decodes": None, "mode": None, "height": None, "width": None,
                   "sha256": None}
    if not facts["exists"]:
        return facts
    facts["sha256"] = file_digest(path)
    try:
        with Image.open(path) as im:
            im.load()  # decode every pixel: a truncated file fails here, not at training time
            facts.update(decodes=True, mode=im.mode, width=im.size[0], height=im.size[1])
    except Exception:  # noqa: BLE001 - any decoder failure means "does not decode"
        facts["decodes"] = False
    return facts


def image_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the header only; None when unreadable."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # noqa: BLE001 - a real image that cannot be read has no expected size
        return None


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column, or nulls when it is missing (the suite's column-set expectation names what is missing)."""
    return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)


def derive_checks(pairs: pd.DataFrame, pairs_dir: str | Path, real: pd.DataFrame, real_dir: str | Path,
                  readout: tuple[PixelProbe, dict[str, float]] | None = None) -> pd.DataFrame:
    """`pairs` plus the CHECK_COLUMNS; `pairs_dir` is the folder image paths are relative to; `real` the
    prepared real pairs (read from `real_dir`); `readout`: the pixel probe (fit on films never edited)
    and its thresholds that read the intra pairs' changed findings (without one, change_read is null)."""
    pairs_dir, real_dir = Path(pairs_dir), Path(real_dir)
    df = pairs.reset_index(drop=True).copy()
    n = len(df)

    reports = _column(df, "report")
    df["word_count"] = np.array([len(str(r).split()) if isinstance(r, str) else 0 for r in reports], dtype=np.int64)

    facts_by_path: dict[str, dict] = {}
    rows = []
    for rel in _column(df, "image"):
        if not isinstance(rel, str) or not rel:
            rows.append(image_facts(pairs_dir / "\0missing"))
            continue
        if rel not in facts_by_path:  # paraphrase pairs share real images: read each file once
            facts_by_path[rel] = image_facts(pairs_dir / rel)
        rows.append(facts_by_path[rel])
    df["image_exists"] = pd.array([f["exists"] for f in rows], dtype="boolean")
    df["image_decodes"] = pd.array([f["decodes"] for f in rows], dtype="boolean")
    df["image_mode"] = pd.array([f["mode"] for f in rows], dtype="string")
    df["image_height"] = pd.array([f["height"] for f in rows], dtype="Int64")
    df["image_width"] = pd.array([f["width"] for f in rows], dtype="Int64")
    recorded = _column(df, "image_sha256")
    df["sha256_matches"] = pd.array([None if f["sha256"] is None else f["sha256"] == s
                                     for f, s in zip(rows, recorded)], dtype="boolean")

    # Joins with the real pairs: the source pair's split, report, labels and image size.
    real = real.set_index("pair_id")
    src_ids = _column(df, "source_pair_id")
    found = src_ids.isin(real.index).to_numpy()
    src = real.reindex(src_ids.where(found, None).to_numpy())
    df["source_split"] = pd.array(np.where(found, src["split"].astype(object).to_numpy(), None), dtype="string")
    sizes: dict[str, tuple[int, int] | None] = {}
    expected = []
    for ok, rel in zip(found, src["image"]):
        if not ok:
            expected.append(None)
            continue
        if rel not in sizes:
            sizes[rel] = image_size(real_dir / rel)
        expected.append(sizes[rel])
    df["expected_height"] = pd.array([e[0] if e else None for e in expected], dtype="Int64")
    df["expected_width"] = pd.array([e[1] if e else None for e in expected], dtype="Int64")
    df["identical_to_source"] = pd.array(
        [None if not ok else normalize_text(r) == normalize_text(s)
         for ok, r, s in zip(found, reports, src["report"])], dtype="boolean")
    if all(label in df.columns for label in LABELS):
        changed = np.zeros(n, dtype=bool)
        for label in LABELS:
            changed |= label_states(df[label]) != label_states(src[label])
        df["label_changed"] = pd.array(np.where(found, changed, None), dtype="boolean")
    else:
        df["label_changed"] = pd.array([None] * n, dtype="boolean")

    patient_split = real.groupby("patient_id")["split"].first()
    patients = _column(df, "patient_id")
    df["patient_split"] = pd.array([patient_split.get(p) if isinstance(p, str) else None for p in patients],
                                   dtype="string")
    df["patient_matches_source"] = pd.array(
        [None if not ok else p == sp for ok, p, sp in zip(found, patients, src["patient_id"])], dtype="boolean")
    df["change_read"] = change_read(df, pairs_dir, src, found, readout)
    return df


def change_read(df: pd.DataFrame, pairs_dir: Path, src: pd.DataFrame, found: np.ndarray,
                readout: tuple[PixelProbe, dict[str, float]] | None) -> pd.Series:
    """Intra pairs: the share of the findings y' changed (from the source pair's labels) that the probe
    reads in x' as y' states them; null for other branches, unreadable images and unchanged labels."""
    out = np.full(len(df), np.nan)
    rows = np.flatnonzero((_column(df, "branch") == "intra").to_numpy() & found
                          & df["image_decodes"].fillna(False).to_numpy(dtype=bool))
    if readout is not None and len(rows) and all(label in df.columns for label in LABELS):
        probe, thresholds = readout
        edited = np.stack([load_gray(pairs_dir / df.at[i, "image"]) for i in rows])
        _, share = reads_new(probe, thresholds, edited, src.iloc[rows], df.iloc[rows])
        out[rows] = share
    return pd.Series(out, index=df.index, dtype="Float64").where(~np.isnan(out), None)
