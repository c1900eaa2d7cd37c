"""Does an edited film x' show the findings its new report y' changed? A pixel probe reads it.

The probe (measurement/pixel_probe.py) is trained on real films that are never edited (the public
pool), so it judges the edits fairly. Two probes are fit on disjoint halves of the pool's patients: the
`select` reader, which prune picks IntraAug candidates with (and intra-sweep chooses settings with), and
the `judge`, which measures the kept edits (intra-check) and states the gate (validate). A pair picked
because one reader saw its change is then read by another that never saw those films.

For each label, pairs whose label differs between the source report y and the new report y' are "changed": the probe's scores of x' should rank the pairs where y'
has the finding above those where it has not (changed-finding AUC; the source film x itself scores
near 0 there, since it shows y's finding). Pairs whose label did not change should keep reading as y
does (unchanged-finding AUC). Per pair, `reads_new` gives the share of the changed findings that the
probe reads in x' as y' states them (what the GX gate states a rule on): an edit that changes nothing
shows y's findings and scores near 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pairaug.data.schema import LABELS, read_pairs
from pairaug.errors import InputError
from pairaug.hashing import stable_hash
from pairaug.measurement.images import load_split_images
from pairaug.measurement.pixel_probe import PixelProbe, mean_auc


def positives(frame: pd.DataFrame, label: str) -> np.ndarray:
    """The label as present (1) / absent (anything else: negative, uncertain, not mentioned)."""
    return pd.to_numeric(frame[label], errors="coerce").fillna(0).to_numpy() == 1


READERS: tuple[str, ...] = ("select", "judge")


def reader_half(patient_ids: pd.Series, reader: str) -> np.ndarray:
    """Rows whose patient belongs to `reader`'s half of the pool (a stable hash of the patient id)."""
    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    half = np.array([int(stable_hash("edit-reader", p, length=8), 16) % 2 for p in patient_ids.astype(str)])
    return half == READERS.index(reader)


def fit_readout_probe(probe_films: str | Path, reader: str | None = None) -> tuple[PixelProbe, dict[str, float]]:
    """A pixel probe for every label that has both classes among the real films of `probe_films`
    (a pairs.parquet; images relative to its folder), and its reading thresholds. `reader` ("select" or
    "judge") fits it on that half of the films' patients only; None: on all of them."""
    probe_films = Path(probe_films)
    films = read_pairs(probe_films)
    if reader is not None:
        films = films[reader_half(films["patient_id"], reader)].reset_index(drop=True)
    if films.empty:
        raise InputError(f"no films to fit the {reader or 'edit'} probe on (it needs the pool's real films"
                         f"{'; half of its patients' if reader else ''})", file=probe_films)
    labels = [lb for lb in LABELS if lb in films.columns and 0 < positives(films, lb).sum() < len(films)]
    images = load_split_images(films, probe_films.parent).numpy()
    targets = {lb: positives(films, lb) for lb in labels}
    probe = PixelProbe(labels).fit(images, targets)
    return probe, reading_thresholds(probe, images, targets)


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def read_edits(probe: PixelProbe, edited: np.ndarray, source_films: np.ndarray, old: pd.DataFrame,
               new: pd.DataFrame) -> dict:
    """Changed- and unchanged-finding AUC per label of the probe on x' (and on x, the no-edit baseline).

    edited, source_films: uint8 (N, H, W); old, new: the labels of y and y', one row per pair."""
    s_edit, s_real = probe.scores(edited), probe.scores(source_films)
    changed, changed_real, unchanged, counts = {}, {}, {}, {}
    for lb in probe.models:
        y_old, y_new = positives(old, lb), positives(new, lb)
        flip = y_old != y_new
        counts[lb] = int(flip.sum())
        changed[lb] = _auc(y_new[flip], s_edit[lb][flip])
        changed_real[lb] = _auc(y_new[flip], s_real[lb][flip])
        unchanged[lb] = _auc(y_new[~flip], s_edit[lb][~flip])
    return {"changed_auc": changed, "changed_mean_auc": mean_auc(changed),
            "changed_source_film_auc": changed_real, "changed_source_film_mean_auc": mean_auc(changed_real),
            "unchanged_auc": unchanged, "unchanged_mean_auc": mean_auc(unchanged),
            "changed_pairs": counts, "pairs": len(edited), "chance": 0.5}


def reading_thresholds(probe: PixelProbe, images: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, float]:
    """Per label, the score above which the probe reads the finding as present: the cut with the best
    balanced accuracy on real films (those it was fit on), so rare findings are not read as always absent."""
    out = {}
    for lb, s in probe.scores(images).items():
        y = np.asarray(targets[lb]).astype(bool)
        cuts = np.unique(np.quantile(s, np.linspace(0.01, 0.99, 99)))
        balanced = [(np.mean(s[y] > c) + np.mean(s[~y] <= c)) / 2 for c in cuts]
        out[lb] = float(cuts[int(np.argmax(balanced))])
    return out


def reads_new(probe: PixelProbe, thresholds: dict[str, float], edited: np.ndarray, old: pd.DataFrame,
              new: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per pair: (changed findings the probe reads, share of them it reads in x' as y' states them).

    NaN where none of the probe's labels changed between y and y'."""
    scores = probe.scores(edited)
    hits = np.zeros(len(edited))
    n_changed = np.zeros(len(edited), dtype=np.int64)
    for lb, s in scores.items():
        y_old, y_new = positives(old, lb), positives(new, lb)
        flip = y_old != y_new
        hits += flip & ((s > thresholds[lb]) == y_new)
        n_changed += flip
    share = np.divide(hits, n_changed, out=np.full(len(edited), np.nan), where=n_changed > 0)
    return n_changed, share
