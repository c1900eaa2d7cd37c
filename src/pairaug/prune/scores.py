"""The scores: S_a, S1–S3 from the scorer's embeddings (each distinct image and text encoded once), and the
`select` probe's change_read of intra edits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from pairaug.data.images import load_gray
from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import InputError
from pairaug.measurement.edit_readout import fit_readout_probe, reads_new
from pairaug.models.scorer import Scorer


def cosine_rows(a: np.ndarray, b: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Row-wise cosine similarity in float64 (0 where a row is the zero vector, as torch's cosine_similarity)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    num = np.einsum("ij,ij->i", a, b)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), eps)
    return np.clip(num / den, -1.0, 1.0)  # rounding can take |cos| a hair past 1


def alignment_scores(img: np.ndarray, txt: np.ndarray) -> np.ndarray:
    """S_a = cos(f_img(x), f_txt(y)) per row."""
    return cosine_rows(img, txt)


def intra_scores(img_new: np.ndarray, txt_new: np.ndarray, img_src: np.ndarray,
                 txt_src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S1, S2, S3) per row: pair alignment, same patient, and the image changed as the report changed."""
    img_new, txt_new = _unit(img_new), _unit(txt_new)
    img_src, txt_src = _unit(img_src), _unit(txt_src)
    return (cosine_rows(img_new, txt_new), cosine_rows(img_new, img_src),
            cosine_rows(img_new - img_src, txt_new - txt_src))


def _unit(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (the scorer's embeddings already are; this makes the scores scale-free)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def intra_thresholds(s1: np.ndarray, s2: np.ndarray, s3: np.ndarray, scale: float, lam: float) -> np.ndarray:
    """[μ_1 / s − λ, μ_2 / s − λ, μ_3 / s − λ] with μ_k the mean of S_k over all intra candidates."""
    if len(s1) == 0:
        return np.full(3, np.nan)
    return np.array([np.mean(s) / scale - lam for s in (s1, s2, s3)], dtype=np.float64)


def encode_unique(scorer: Scorer, images: list[str], texts: list[str], batch_size: int,
                  progress: bool = True) -> tuple[dict[str, int], np.ndarray, dict[str, int], np.ndarray]:
    """Encode each distinct image path and text once, in sorted order: (index, embeddings) per modality."""
    img_keys = sorted(set(images))
    txt_keys = sorted(set(texts))
    bar = tqdm(total=len(img_keys) + len(txt_keys), desc="prune-score", unit="item", disable=None if progress else True)
    with bar:
        img = _encode_in_chunks(scorer.encode_images, img_keys, batch_size, bar)
        txt = _encode_in_chunks(scorer.encode_texts, txt_keys, batch_size, bar)
    return {k: i for i, k in enumerate(img_keys)}, img, {k: i for i, k in enumerate(txt_keys)}, txt


def _encode_in_chunks(encode, items: list, batch_size: int, bar: tqdm) -> np.ndarray:
    out = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        out.append(np.asarray(encode(chunk), dtype=np.float32))
        bar.update(len(chunk))
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def change_reads(cands: pd.DataFrame, prepared: Path, pool: Path) -> np.ndarray:
    """Per candidate, the share of the findings its report changed that the `select` probe (fit on the
    pool's films, never edited) reads in the intra image as the report states them; NaN for other branches."""
    out = np.full(len(cands), np.nan)
    rows = np.flatnonzero((cands["branch"] == "intra").to_numpy())
    if not len(rows):
        return out
    if not pool.exists():
        raise InputError("the public pool's pairs are not there (intra selection reads the change with a probe fit "
                         "on its films; run `dvc repro prepare-pool`)", file=pool)
    probe, thresholds = fit_readout_probe(pool, reader="select")
    sub = cands.iloc[rows]
    source_labels = read_pairs(prepared).set_index("pair_id").loc[sub["source_pair_id"], list(LABELS)]
    edited = np.stack([load_gray(path) for path in sub["image_abs"]])
    out[rows] = reads_new(probe, thresholds, edited, source_labels.reset_index(drop=True),
                          sub.reset_index(drop=True))[1]
    return out
