"""What intra-check measures on the IntraAug edits, once the images are drawn: does x' keep the patient
(the scorer's cosines against an unrelated-image reference), does it show y''s findings (the `judge`
pixel probe, measurement/edit_readout.py), and how close does an inversion redraw x (PSNR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.measurement.edit_readout import fit_readout_probe, read_edits, reads_new


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images (N, H, W)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


def mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    """The mean row-wise dot product of unit embeddings (NaN for none)."""
    return float(np.mean(np.sum(a * b, axis=1))) if len(a) else float("nan")


def patient_figures(f_edit: np.ndarray, f_real: np.ndarray, f_branch: np.ndarray, f_fresh: np.ndarray,
                    f_random: np.ndarray, ref_pos: np.ndarray, is_kept: np.ndarray) -> dict:
    """Does x' keep the patient? mean cos(f_img(x'), f_img(x)) against fresh draws of the reference pairs
    (`ref_pos`: their rows) vs random real films of the same split (`f_random`)."""
    patient = {
        "edited_vs_source_film": mean_cos(f_edit, f_real),
        "kept_edited_vs_source_film": mean_cos(f_edit[is_kept], f_real[is_kept]) if is_kept.any() else None,
        "fresh_vs_random_film": mean_cos(f_fresh, f_random),
        "fresh_vs_source_film": mean_cos(f_fresh, f_real[ref_pos]),
        "source_branch_vs_source_film": mean_cos(f_branch, f_real),
        "edited_vs_source_branch": mean_cos(f_edit, f_branch),
        "reference": "intra reports drawn from fresh per-pair noise (InterAug's sampling), "
                     f"{len(ref_pos)} pairs, against random real films of the same split",
    }
    patient["keeps_patient"] = patient["edited_vs_source_film"] > patient["fresh_vs_random_film"]
    return patient


def label_figures(probe_films: str | Path, edited: np.ndarray, real: np.ndarray, old: pd.DataFrame,
                  new: pd.DataFrame, is_kept: np.ndarray) -> dict:
    """Does x' show y''s findings? The `judge` probe's reading of all edits and of the kept ones (null when
    prune kept none), with changed_read: the mean share of a pair's changed findings read as y' states them."""
    probe, thresholds = fit_readout_probe(probe_films, reader="judge")  # not the reader prune selected with
    labels = {"all": read_edits(probe, edited, real, old, new)}
    # prune may keep no intra pair: the kept figures are then null (the gate names the empty branch)
    labels["kept"] = read_edits(probe, edited[is_kept], real[is_kept], old[is_kept].reset_index(drop=True),
                                new[is_kept].reset_index(drop=True)) if is_kept.any() else None
    # per pair, defined wherever a finding the judge reads changed (the AUCs need both directions of a change)
    _, share = reads_new(probe, thresholds, edited, old, new)
    for name, rows in (("all", np.ones(len(share), dtype=bool)), ("kept", is_kept)):
        if labels[name] is None:
            continue
        readable = rows & ~np.isnan(share)
        labels[name]["changed_read"] = float(np.mean(share[readable])) if readable.any() else None
        labels[name]["changed_read_pairs"] = int(readable.sum())
    return labels
