"""`intra-sweep`: choose IntraAug's edit settings on the valid split, from a measured trade-off.

Each setting (guidance w × η × self-η of `intra.sweep`) edits the valid films from their reports y to
IntraAug rewrites y' (rewrite's `intra_valid`), and is measured two ways:

- draws the change: the changed-finding AUC of a pixel probe fit on the public pool's films
  (measurement/edit_readout.py) reading x';
- keeps the patient: mean cos(f(x'), f(x)) under the scorer's image tower (x = the source film).

The chosen setting draws the change best among those keeping the patient at least `min_patient_cos`
(none does: the one keeping it best, with a warning). intra-generate reads the choice for every param
left null (`intra.eta`, `intra.self_eta`, `intra.guidance`); metrics/intra_sweep.json is the DVC plot.
No train or test film is edited here.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.data.images import load_gray
from pairaug.errors import InputError
from pairaug.generate.common import load_pipe, read_rewritten, stored_image_size
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra import edit_batch, native_height, real_sources
from pairaug.hashing import seed_from
from pairaug.io import read_json
from pairaug.launch import generation_dtype, stage_device
from pairaug.measurement.edit_readout import fit_readout_probe, read_edits
from pairaug.measurement.images import resize_batch
from pairaug.models.scorer import load_scorer

log = logging.getLogger(__name__)

SETTING_KEYS = ("guidance", "eta", "self_eta")


def sweep_settings(cfg: IntraConfig) -> list[dict]:
    """The settings tried: the grid of `intra.sweep`, with any param fixed in `intra` held at its value."""
    grids = {k: [getattr(cfg, k)] if getattr(cfg, k) is not None else getattr(cfg.sweep, k) for k in SETTING_KEYS}
    return [dict(zip(SETTING_KEYS, values)) for values in itertools.product(*(grids[k] for k in SETTING_KEYS))]


def choose(rows: list[dict], min_patient_cos: float) -> dict:
    """The setting that draws the change best while keeping the patient (ties: the one keeping it better)."""
    keeping = [r for r in rows if r["patient_cos"] >= min_patient_cos]
    if not keeping:
        best = max(rows, key=lambda r: r["patient_cos"])
        log.warning("intra-sweep: no setting keeps cos(f(x'), f(x)) >= %.2f (best %.3f); taking the one that "
                    "keeps the patient best", min_patient_cos, best["patient_cos"])
        return best
    return max(keeping, key=lambda r: (-1.0 if r["changed_auc"] is None else r["changed_auc"], r["patient_cos"]))


def run_sweep(cfg: IntraConfig, seed: int, *, prepared: str | Path, rewritten_valid: str | Path,
              generator_dir: str | Path, scorer_dir: str | Path, probe_films: str | Path) -> list[dict]:
    """Edit the valid films with every setting; return the plot rows (one per setting, `chosen` marked)."""
    edits = read_rewritten(rewritten_valid)
    if edits.empty:
        raise InputError("no IntraAug rewrites of valid reports to choose the edit settings on "
                         "(rewrite.valid_reports is 0, or none could be rewritten)", file=rewritten_valid)
    sources = real_sources(prepared, edits["source_pair_id"], rewritten_valid)
    src = sources.loc[edits["source_pair_id"]]
    if set(src["split"]) != {"valid"}:
        raise InputError("intra-sweep edits valid films only; these rewrites name films of split(s) "
                         f"{sorted(set(src['split']) - {'valid'})}", file=rewritten_valid, field="source_pair_id")
    new_labels = pd.read_parquet(rewritten_valid).query("status == 'ok'").reset_index(drop=True)
    films = np.stack([load_gray(p) for p in src["path"]])
    stored = stored_image_size(prepared)
    device = stage_device()
    pipe = load_pipe(generator_dir, generation_dtype(cfg.dtype, device), device)
    scorer = load_scorer(scorer_dir)
    probe, _ = fit_readout_probe(probe_films, reader="select")  # a tuned choice: the selecting reader
    f_real = scorer.encode_images(films)
    # the reference: each valid film against another patient's (a derangement of the same films)
    order = np.random.default_rng(seed_from("intra-sweep", seed)).permutation(len(films))
    other = np.roll(order, 1)[np.argsort(order)]
    same = src["patient_id"].to_numpy()[other] == src["patient_id"].to_numpy()
    unrelated = float(np.mean(np.sum(f_real * f_real[other], axis=1)[~same])) if (~same).any() else float("nan")
    seeds = [seed_from("intra-sweep-noise", pid) for pid in edits["source_pair_id"]]
    height = native_height(pipe, cfg)
    clean = resize_batch(films, height)
    rows = []
    for setting in sweep_settings(cfg):
        run = cfg.resolved(setting)
        run.require_resolved()
        edited = np.concatenate([  # chunks of intra.batch_size pairs, as intra-generate edits
            edit_batch(pipe, run, clean[s:s + cfg.batch_size], src["report"].tolist()[s:s + cfg.batch_size],
                       edits["report"].tolist()[s:s + cfg.batch_size], seeds[s:s + cfg.batch_size],
                       [0] * len(seeds[s:s + cfg.batch_size]))[1]
            for s in range(0, len(seeds), cfg.batch_size)])
        x = resize_batch(edited, stored)
        read = read_edits(probe, x, films, src.reset_index(drop=True), new_labels)
        cos = float(np.mean(np.sum(scorer.encode_images(x) * f_real, axis=1)))
        rows.append({**setting, "setting": ", ".join(f"{k} {setting[k]:g}" for k in SETTING_KEYS),
                     "patient_cos": cos, "changed_auc": _finite(read["changed_mean_auc"]),
                     "unchanged_auc": _finite(read["unchanged_mean_auc"]), "unrelated_cos": _finite(unrelated),
                     "pairs": len(x)})
        log.info("intra-sweep %s: changed-finding AUC %.3f, unchanged %.3f, cos(f(x'), f(x)) %.3f",
                 rows[-1]["setting"], read["changed_mean_auc"], read["unchanged_mean_auc"], cos)
    best = choose(rows, cfg.sweep.min_patient_cos)
    return [{**r, "chosen": r is best} for r in rows]


def _finite(x: float) -> float | None:
    """NaN (no pair changed a label the probe reads) as null: the plot file stays strict JSON."""
    return None if np.isnan(x) else float(x)


def chosen_setting(sweep_path: str | Path) -> dict:
    """The setting intra-sweep chose (metrics/intra_sweep.json)."""
    rows = read_json(sweep_path)
    picked = [r for r in rows if r.get("chosen")] if isinstance(rows, list) else []
    if len(picked) != 1 or any(k not in picked[0] for k in SETTING_KEYS):
        raise InputError("no chosen setting (run `dvc repro intra-sweep`)", file=sweep_path)
    return {k: picked[0][k] for k in SETTING_KEYS}
