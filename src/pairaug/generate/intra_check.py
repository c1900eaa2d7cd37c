"""intra-check's images and orchestration (metrics/intra.json): the generator redraws what the figures
compare against (fresh-noise draws of the intra reports, inversions of the source films redrawn with y),
and measurement/intra_check.py measures the edits against them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.generate.common import load_pipe, stored_image_size
from pairaug.generate.config import IntraConfig
from pairaug.generate.intra import native_height
from pairaug.generate.inversion import invert, reconstruct
from pairaug.hashing import seed_from
from pairaug.launch import generation_dtype, stage_device
from pairaug.measurement.images import resize_batch
from pairaug.measurement.intra_check import label_figures, patient_figures, psnr
from pairaug.models.generator import TextToImagePipeline
from pairaug.models.scorer import load_scorer


def kept_intra_ids(pruned: str | Path) -> set[str]:
    """The intra pairs that pruning kept (data/pruned/pairs.parquet)."""
    pruned = Path(pruned)
    if not pruned.exists():
        raise InputError("pruned pairs not found (run `dvc repro prune`)", file=pruned)
    pairs = pd.read_parquet(pruned, columns=["pair_id", "branch"])
    return set(pairs.loc[pairs["branch"] == "intra", "pair_id"])


def intra_metrics(cfg: IntraConfig, seed: int, manifest: pd.DataFrame, *, out_dir: str | Path,
                  prepared: str | Path, rewritten: str | Path, generator_dir: str | Path,
                  scorer_dir: str | Path, probe_films: str | Path, kept: set[str]) -> dict:
    """metrics/intra.json: does x' keep the patient, show y''s findings, and does inversion redraw x?
    For all candidates and for the ones pruning kept (`kept`: their pair ids).

    - patient: mean cos(f_img(x'), f_img(x)) (x = the real source film, f = the scorer) against
      mean cos(f_img(g), f_img(random real film of the same split)) for g = intra reports drawn from
      fresh noise, as InterAug draws its images (an unrelated image of the same kind).
    - labels: a pixel probe trained on the real films of `probe_films` (the public pool: disjoint from
      the films being edited; the `judge` half of its patients, not the half prune selected with) reads
      x' (measurement/edit_readout.py): changed-finding AUC per label
      (pairs whose label differs between y and y'; near 0 for x itself, above 0.5 where x' shows y''s
      finding), unchanged-finding AUC, the same probe on x (the no-edit baseline), and changed_read: the
      mean share of a pair's changed findings read in x' as y' states them (per pair, so defined for every
      pair with a readable change, where an AUC needs pairs of both directions of a label's change).
    - inversion: x inverted with y and redrawn with y (no edit): PSNR at guidance 1, and at the edit's
      guidance with plain DDIM inversion and with `cfg.inversion`, against fresh-noise draws of y.
    """
    cfg.require_resolved()
    if manifest.empty:
        return {"pairs": 0, "init": cfg.init}
    out_dir, prepared = Path(out_dir), Path(prepared)
    root = prepared.parent
    pairs = read_pairs(prepared)
    by_id = pairs.set_index("pair_id")
    rng = np.random.default_rng(seed_from("intra-metrics", seed))
    stored = stored_image_size(prepared)
    device = stage_device()
    pipe = load_pipe(generator_dir, generation_dtype(cfg.dtype, device), device)
    scorer = load_scorer(scorer_dir)

    edited = np.stack([load_gray(out_dir / rel) for rel in manifest["image"]])
    source_branch = np.stack([load_gray(out_dir / rel) for rel in manifest["source_image"]])
    src = by_id.loc[manifest["source_pair_id"]]
    real = np.stack([load_gray(root / rel) for rel in src["image"]])
    f_edit, f_real, f_branch = (scorer.encode_images(a) for a in (edited, real, source_branch))
    is_kept = manifest["pair_id"].isin(kept).to_numpy()

    # the reference: intra reports drawn from fresh noise (as InterAug draws) vs random real films of the split
    ref = manifest.iloc[np.sort(rng.choice(len(manifest), min(cfg.check.reference_pairs, len(manifest)),
                                           replace=False))]
    fresh = _draw(pipe, ref["report"].tolist(), [seed_from("intra-reference", pid) for pid in ref["pair_id"]],
                  cfg, stored)
    ref_split = by_id.loc[ref["source_pair_id"], "split"].to_numpy()
    random_real = [rng.choice(pairs.index[pairs["split"] == s]) for s in ref_split]
    f_random = scorer.encode_images([root / pairs.at[i, "image"] for i in random_real])
    f_fresh = scorer.encode_images(fresh)
    ref_pos = manifest.index.get_indexer(ref.index)
    patient = patient_figures(f_edit, f_real, f_branch, f_fresh, f_random, ref_pos, is_kept)
    labels = label_figures(probe_films, edited, real, src.reset_index(drop=True), _new_labels(rewritten, manifest),
                           is_kept)
    inversion = _inversion_psnr(pipe, cfg, manifest, by_id, root, stored, rng)
    return {"pairs": len(manifest), "kept": int(is_kept.sum()), "init": cfg.init, "inversion_method": cfg.inversion,
            "steps": cfg.steps, "guidance": cfg.guidance, "eta": cfg.eta, "self_eta": cfg.self_eta,
            "reweight": cfg.reweight, "blend_threshold": cfg.blend_threshold, "patient": patient, "labels": labels,
            "inversion": inversion}


def _new_labels(rewritten: str | Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """The labels of each pair's new report y', one row per manifest row."""
    new = pd.read_parquet(rewritten).drop_duplicates(["source_pair_id", "report_new"])
    new = new.set_index(["source_pair_id", "report_new"])
    return new.reindex(list(zip(manifest["source_pair_id"], manifest["report"]))).reset_index(drop=True)


def _draw(pipe: TextToImagePipeline, prompts: list[str], seeds: list[int], cfg: IntraConfig,
          stored: int) -> np.ndarray:
    batch = 2 * cfg.batch_size  # 2 UNet rows a prompt: the 4 x batch_size rows of an intra-generate chunk
    out = [pipe(prompts[s:s + batch], seeds[s:s + batch], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                height=native_height(pipe, cfg)) for s in range(0, len(prompts), batch)]
    return resize_batch(np.concatenate(out), stored)


def _inversion_psnr(pipe: TextToImagePipeline, cfg: IntraConfig, manifest: pd.DataFrame, by_id: pd.DataFrame,
                    root: Path, stored: int, rng: np.random.Generator) -> dict:
    sample = manifest.iloc[np.sort(rng.choice(len(manifest), min(cfg.check.psnr_pairs, len(manifest)), replace=False))]
    src = by_id.loc[sample["source_pair_id"]]
    real = np.stack([load_gray(root / rel) for rel in src["image"]])
    reports = src["report"].tolist()
    height = native_height(pipe, cfg)
    out: dict = {"pairs": len(sample), "refine": cfg.inversion_refine, "method": cfg.inversion}
    figures: dict[str, list] = {}
    batch = 2 * cfg.batch_size  # films per call: as many UNet rows as an intra-generate chunk
    for start_at in range(0, len(sample), batch):
        sl = slice(start_at, start_at + batch)
        clean = pipe.encode_image(resize_batch(real[sl], height))
        runs = {"guidance_1": ("ddim", 1.0), "guidance_edit_ddim": ("ddim", cfg.guidance),
                "guidance_edit": (cfg.inversion, cfg.guidance)}
        for name, (method, g) in runs.items():
            inv = invert(pipe, clean, reports[sl], cfg.steps, method=method, guidance=g, refine=cfg.inversion_refine,
                         inner_steps=cfg.null_text_steps, lr=cfg.null_text_lr)
            out["start_step"] = inv.start
            redrawn = reconstruct(pipe, inv.latents, reports[sl], cfg.steps, g, inv.start, inv.nulls)
            figures.setdefault(name, []).append(psnr(resize_batch(pipe.decode(redrawn), stored), real[sl]))
    noise = _draw(pipe, reports, [seed_from("intra-psnr", pid) for pid in src.index], cfg, stored)
    figures["fresh_noise"] = [psnr(noise, real)]
    for name, values in figures.items():
        out[f"psnr_{name}"] = float(np.mean(np.concatenate(values)))
    return out
