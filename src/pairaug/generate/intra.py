"""IntraAug generation (`intra-generate`): edit each patient's film from y to y' with prompt-to-prompt.

For each IntraAug report y' (rewritten from the report y of a real pair (x, y)), y and y' are sampled as
one batch from the same starting latent under attention control (generate/p2p.py): the edited image x'
keeps the source's layout while showing y''s findings. The starting latent is the DDIM inversion of x
conditioned on y (`init: inversion`, generate/inversion.py: x' is an edit of this patient's film) or
per-pair noise (`init: noise`, as PairAug's code did). The source-branch image is kept for audit.

Each report gets `candidates` edits (PairAug's code drew 10 per report) and `prune` selects among them
with S1–S3. Under `init: noise` the candidates start from different noise; under `init: inversion`
candidate 0 starts from the inversion itself and candidate k > 0 from the inversion with a share
`candidate_noise` of fresh noise mixed in (variance-preserving), so it varies around this patient's film.

Output (`data/synthetic/intra/`): `manifest.parquet` with the MANIFEST_COLUMNS of generate/common.py
(branch "intra", eta, inversion) plus `source_image`, `source_image_sha256`; `images/<pair_id>.png`
(x') and `source/<pair_id>.png` (the source branch). Work goes through the resumable ChunkStore.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.generate import common
from pairaug.generate.config import IntraConfig
from pairaug.generate.inversion import invert
from pairaug.generate.p2p import LocalBlend, edit_sample
from pairaug.generate.store import ChunkStore
from pairaug.hashing import seed_from, stable_hash
from pairaug.launch import generation_dtype, stage_device
from pairaug.measurement.images import resize_batch
from pairaug.models.generator import TextToImagePipeline
from pairaug.parallel import Ranks

log = logging.getLogger(__name__)

INTRA_COLUMNS = [*common.MANIFEST_COLUMNS, "candidate", "source_image", "source_image_sha256"]


def native_height(pipe: TextToImagePipeline, cfg: IntraConfig) -> int:
    return cfg.resolution or pipe.unet.config.sample_size * pipe.vae_scale


def edit_batch(pipe: TextToImagePipeline, cfg: IntraConfig, clean: np.ndarray, source_reports: list[str],
               edit_reports: list[str], seeds: list[int], candidates: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Edit films (uint8 (N, H, W) at the generator's size) from y to y': (source branch, x'), uint8.

    `init: inversion` inverts each distinct film once (a report's candidates share it): candidate 0 starts
    from the inversion, k > 0 with `candidate_noise` of its fresh noise mixed in; `init: noise` starts
    from each pair's noise. The unconditional embeddings of the inversion (`cfg.inversion`) guide both
    branches."""
    height = native_height(pipe, cfg)
    noise = pipe.initial_noise(seeds, height) * pipe.scheduler.init_noise_sigma
    start, nulls, latents = 0, None, noise
    if cfg.init == "inversion":
        keys = [(r, clean[i].tobytes()) for i, r in enumerate(source_reports)]
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        unique = sorted(set(first.values()))
        row = [unique.index(first[k]) for k in keys]
        inv = invert(pipe, pipe.encode_image(clean[unique]), [source_reports[i] for i in unique], cfg.steps,
                     method=cfg.inversion, guidance=cfg.guidance, refine=cfg.inversion_refine,
                     inner_steps=cfg.null_text_steps, lr=cfg.null_text_lr)
        start = inv.start
        nulls = None if inv.nulls is None else [n[row] for n in inv.nulls]
        mix = torch.tensor([0.0 if k == 0 else cfg.candidate_noise for k in candidates], dtype=inv.latents.dtype,
                           device=inv.latents.device).view(-1, *([1] * (inv.latents.dim() - 1)))
        latents = (1 - mix).sqrt() * inv.latents[row] + mix.sqrt() * noise.to(inv.latents)
    # Candidate 0 of an inversion starts from the inversion itself, so its edit is the same in every
    # replicate: each distinct (film, report, edit) is sampled once and copied to its rows.
    if cfg.init == "inversion":
        keys = [(r, clean[i].tobytes(), edit_reports[i], "inversion") if candidates[i] == 0 else i
                for i, r in enumerate(source_reports)]
    else:
        keys = list(range(len(source_reports)))
    first_of = {k: i for i, k in reversed(list(enumerate(keys)))}
    todo = sorted(set(first_of.values()))
    back = torch.tensor([todo.index(first_of[k]) for k in keys])
    pick = torch.tensor(todo)
    blend = LocalBlend(cfg.blend_threshold, cfg.blend_start) if cfg.blend_threshold is not None else None
    src_lat, edit_lat = edit_sample(pipe, [source_reports[i] for i in todo], [edit_reports[i] for i in todo],
                                    latents[pick.to(latents.device)], steps=cfg.steps, guidance=cfg.guidance,
                                    eta=cfg.eta, self_eta=cfg.self_eta, self_max_positions=cfg.self_max_positions,
                                    start=start, reweight=cfg.reweight, blend=blend,
                                    nulls=None if nulls is None else [n[pick.to(n.device)] for n in nulls])
    return pipe.decode(src_lat)[back.numpy()], pipe.decode(edit_lat)[back.numpy()]


def make_intra_chunk(pipe: TextToImagePipeline, cfg: IntraConfig, stored_size: int, gen_sha: str,
                     sources: pd.DataFrame):
    """A chunk-maker for `ChunkStore`: invert (or draw noise for) the chunk's films, then one batch
    [uncond y, uncond y', cond y, cond y'] per denoising step for all pairs of the chunk.

    `sources`: the real pairs indexed by pair_id, with `report` (y) and `path` (x on disk).
    """
    height = native_height(pipe, cfg)

    def make(chunk: pd.DataFrame) -> tuple[list[dict], dict[str, np.ndarray]]:
        src = sources.loc[chunk["source_pair_id"]]
        source_reports = src["report"].tolist()
        real = resize_batch(np.stack([load_gray(p) for p in src["path"]]), height)
        source_branch, edited = edit_batch(pipe, cfg, real, source_reports, chunk["report"].tolist(),
                                           chunk["seed"].tolist(), chunk["candidate"].tolist())
        edited, source_branch = resize_batch(edited, stored_size), resize_batch(source_branch, stored_size)
        rows, files = [], {}
        for (_, item), pixels, src_pixels in zip(chunk.iterrows(), edited, source_branch):
            rel, src_rel = f"images/{item['pair_id']}.png", f"source/{item['pair_id']}.png"
            files[rel], files[src_rel] = pixels, src_pixels
            # seed: the pair's noise seed (the start with init noise), recorded in both modes
            rows.append({"pair_id": item["pair_id"], "branch": "intra", "replicate": int(item["replicate"]),
                         "source_pair_id": item["source_pair_id"],
                         "report": item["report"], "image": rel, "seed": int(item["seed"]), "generator_sha": gen_sha,
                         "steps": cfg.steps, "guidance": cfg.guidance, "eta": cfg.eta,
                         "inversion": cfg.init == "inversion", "candidate": int(item["candidate"]),
                         "source_image": src_rel})
        return rows, files
    return make


def real_sources(prepared: str | Path, needed: pd.Series, rewritten: str | Path) -> pd.DataFrame:
    """The real pairs the IntraAug reports were rewritten from, indexed by pair_id, with image paths."""
    prepared = Path(prepared)
    pairs = read_pairs(prepared).set_index("pair_id")
    missing = sorted(set(needed) - set(pairs.index))
    if missing:
        row = int(np.flatnonzero(needed.to_numpy() == missing[0])[0])
        raise InputError(f"source pair '{missing[0]}' is not in {prepared} (rerun `dvc repro rewrite`)",
                         file=rewritten, row=row, field="source_pair_id")
    pairs = pairs.loc[pairs.index.isin(set(needed))].copy()
    pairs["path"] = [str(prepared.parent / rel) for rel in pairs["image"]]
    return pairs


def plan_candidates(edits: pd.DataFrame, seed: int, gen_sha: str, cfg: IntraConfig,
                    replicates: Sequence[int] = (0,)) -> pd.DataFrame:
    """`cfg.candidates` items per IntraAug report and replicate, candidate 0 keeping the id a single edit had;
    each candidate's id (and so its noise seed) hashes its index and replicate. Ordered report by report;
    the store (`intra_store`) keeps each source film's items in one chunk where the batch size allows."""
    first = common.plan("intra", edits, seed, gen_sha, cfg, replicates).assign(candidate=0)
    frames = [first]
    for k in range(1, cfg.candidates):
        ids = [stable_hash(pid, "candidate", k) for pid in first["pair_id"]]
        frames.append(first.assign(pair_id=ids, seed=[seed_from("noise", pid) for pid in ids], candidate=k))
    report = np.tile(np.repeat(np.arange(len(edits)), len(replicates)), cfg.candidates)
    items = pd.concat(frames, ignore_index=True).assign(_report=report)
    return (items.sort_values(["_report", "replicate", "candidate"], kind="stable").drop(columns="_report")
            .reset_index(drop=True))


def intra_store(cfg: IntraConfig, seed: int, edits: pd.DataFrame, gen_sha: str, work_root: str | Path,
                dtype: torch.dtype = torch.float32, replicates: Sequence[int] = (0,)) -> ChunkStore:
    """The resumable chunks of this run, in a work folder keyed by the pairs and every image-shaping param
    (pair ids hash the reports, seed, generator and sampler; eta, init etc. are in the key only, so a
    changed edit setting never reuses chunks, while the per-pair noise stays the same across settings)."""
    items = plan_candidates(edits, seed, gen_sha, cfg, replicates)
    key = stable_hash(items["pair_id"].tolist(), cfg.fingerprint(dtype), "chunks by source film")
    # A film's items (its reports' candidates, every replicate) in one chunk: the film is inverted once
    # and candidate 0, which draws no noise, sampled once for all replicates (edit_batch).
    return ChunkStore(Path(work_root) / f"intra-{key}", items, cfg.batch_size, group_by="source_pair_id")


def generate_intra(cfg: IntraConfig, seed: int, replicates: Sequence[int] = (0,), *, prepared: str | Path, rewritten: str | Path,
                   generator_dir: str | Path, out_dir: str | Path, work_root: str | Path,
                   ranks: Ranks | None = None) -> pd.DataFrame | None:
    """Generate the IntraAug pairs into `out_dir`; rank 0 assembles and returns the manifest."""
    cfg.require_resolved()
    ranks = ranks or Ranks.from_env()
    edits = common.read_rewritten(rewritten)
    sources = real_sources(prepared, edits["source_pair_id"], rewritten)
    gen_sha = common.generator_sha(generator_dir)
    device = stage_device(ranks)
    dtype = generation_dtype(cfg.dtype, device)
    store = intra_store(cfg, seed, edits, gen_sha, work_root, dtype, replicates)
    make = make_intra_chunk(common.load_pipe(generator_dir, dtype, device), cfg, common.stored_image_size(prepared),
                            gen_sha, sources)
    return common.run_store(store, make, ranks, "intra", out_dir, INTRA_COLUMNS, log)
