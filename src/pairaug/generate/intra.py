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

Output (`data/synthetic/intra/`): `manifest.parquet` with the MANIFEST_COLUMNS of generate/inter.py
(branch "intra", eta, inversion) plus `source_image`, `source_image_sha256`; `images/<pair_id>.png`
(x') and `source/<pair_id>.png` (the source branch). Work goes through the resumable ChunkStore.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError, ParamError
from pairaug.generate.inter import MANIFEST_COLUMNS, generator_sha, plan, progress_bar
from pairaug.generate.inversion import invert, reconstruct
from pairaug.generate.p2p import LocalBlend, edit_sample
from pairaug.generate.run import read_rewritten, stored_image_size
from pairaug.generate.store import ChunkStore, run_chunks
from pairaug.hashing import seed_from, stable_hash
from pairaug.launch import generation_dtype, stage_device
from pairaug.measurement.edit_readout import fit_readout_probe, read_edits, reads_new
from pairaug.measurement.images import resize_batch
from pairaug.models.checkpoints import resolve
from pairaug.models.generator import TextToImagePipeline, load_generator
from pairaug.models.scorer import load_scorer
from pairaug.parallel import Ranks
from pairaug.params import in_range, positive

log = logging.getLogger(__name__)

INTRA_COLUMNS = [*MANIFEST_COLUMNS, "candidate", "source_image", "source_image_sha256"]


@dataclass
class IntraCheck:
    """What metrics/intra.json measures beyond the generated pairs themselves."""

    psnr_pairs: int = 64  # pairs inverted and redrawn with y (no edit) for the reconstruction PSNR
    reference_pairs: int = 256  # intra reports also drawn from fresh noise: the "unrelated image" reference

    def validate(self, prefix: str) -> None:
        positive(prefix, psnr_pairs=self.psnr_pairs, reference_pairs=self.reference_pairs)


@dataclass
class IntraSweep:
    """intra-sweep's grid (generate/intra_sweep.py): the settings tried on the valid split for every one
    of `intra.guidance`, `intra.eta`, `intra.self_eta` left null."""

    guidance: list[float] = field(default_factory=lambda: [3.5, 7.5])
    eta: list[float] = field(default_factory=lambda: [0.2, 0.5])
    self_eta: list[float] = field(default_factory=lambda: [0.0, 0.2])
    min_patient_cos: float = 0.65  # the least mean cos(f(x'), f(x)) a chosen setting keeps

    def validate(self, prefix: str) -> None:
        for name in ("guidance", "eta", "self_eta"):
            values = getattr(self, name)
            if not values:
                raise ParamError(f"{prefix}.{name}", "must list at least one value")
            for v in values:
                if name == "guidance":
                    positive(prefix, guidance=v)
                else:
                    in_range(prefix, name, v, 0.0, 1.0)
        in_range(prefix, "min_patient_cos", self.min_patient_cos, -1.0, 1.0)


INVERSIONS = ("negative_prompt", "null_text", "ddim")


@dataclass
class IntraConfig:
    steps: int = 15
    # null: chosen on the valid split by intra-sweep (its grid: `sweep`); a number fixes the setting
    guidance: float | None = None
    eta: float | None = None  # cross-attention of the edit branch swapped for the source's while step < eta * steps
    self_eta: float | None = None  # self-attention swapped while step < self_eta * steps ...
    self_max_positions: int = 64  # ... in layers with at most this many query positions
    reweight: float = 2.0  # the edit branch's cross-attention to the tokens y' adds, times this
    blend_threshold: float | None = None  # local blend (p2p): the mask's cut; null: no local blend
    blend_start: float = 0.2  # local blend from this share of the steps on
    init: Literal["noise", "inversion"] = "inversion"
    inversion: Literal["negative_prompt", "null_text", "ddim"] = "negative_prompt"
    inversion_refine: int = 1  # fixed-point refinements per inversion step (0: plain DDIM inversion)
    null_text_steps: int = 2  # inversion null_text: Adam steps per sampling step
    null_text_lr: float = 0.05
    resolution: int | None = None  # null: the generator's native size; images are stored at data.image_size
    batch_size: int = 32  # pairs per chunk (one UNet batch of 4 x batch_size rows); also the unit of resume
    candidates: int = 2  # edits per report; prune keeps the best that pass S1-S3 (PairAug's code: 10)
    candidate_noise: float = 0.3  # init inversion: share of fresh noise in the start of candidates k > 0
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    sweep: IntraSweep = field(default_factory=IntraSweep)
    check: IntraCheck = field(default_factory=IntraCheck)

    def validate(self, prefix: str) -> None:
        positive(prefix, steps=self.steps, batch_size=self.batch_size, reweight=self.reweight,
                 self_max_positions=self.self_max_positions, candidates=self.candidates,
                 null_text_steps=self.null_text_steps, null_text_lr=self.null_text_lr)
        if self.guidance is not None:
            positive(prefix, guidance=self.guidance)
        for name in ("eta", "self_eta"):
            if getattr(self, name) is not None:
                in_range(prefix, name, getattr(self, name), 0.0, 1.0)
        if self.blend_threshold is not None:
            in_range(prefix, "blend_threshold", self.blend_threshold, 0.0, 1.0)
        in_range(prefix, "blend_start", self.blend_start, 0.0, 1.0)
        in_range(prefix, "candidate_noise", self.candidate_noise, 0.0, 1.0)
        in_range(prefix, "inversion_refine", self.inversion_refine, 0, 10)
        if self.inversion not in INVERSIONS:
            raise ParamError(f"{prefix}.inversion", f"must be one of {', '.join(INVERSIONS)}, got {self.inversion!r}")
        if self.resolution is not None:
            positive(prefix, resolution=self.resolution)
        self.sweep.validate(f"{prefix}.sweep")

    def resolved(self, chosen: dict) -> IntraConfig:
        """This config with the params left null set to intra-sweep's choice (`chosen`: guidance, eta, self_eta)."""
        return dataclasses.replace(self, **{k: chosen[k] if getattr(self, k) is None else getattr(self, k)
                                            for k in ("guidance", "eta", "self_eta")})

    def require_resolved(self) -> None:
        """Fail clearly when an edit setting is still null (not yet set from intra-sweep's choice)."""
        missing = [k for k in ("guidance", "eta", "self_eta") if getattr(self, k) is None]
        if missing:
            raise ParamError(f"intra.{missing[0]}", "is null: set it, or run intra-sweep and use its choice "
                                                    "(`dvc repro intra-sweep`; IntraConfig.resolved)")

    def fingerprint(self, dtype: torch.dtype) -> str:
        """Everything that shapes the images, with the dtype in use (float16 applies on GPU only): keys the
        resume folder. The metrics' sample sizes and the sweep's grid do not shape the images."""
        shaping = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("check", "dtype", "sweep")}
        return stable_hash(shaping, str(dtype))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images (N, H, W)."""
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-10))


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
    each candidate's id (and so its noise seed) hashes its index and replicate. Ordered report by report, so
    the films a chunk inverts serve all of their report's candidates."""
    first = plan("intra", edits, seed, gen_sha, cfg, replicates).assign(candidate=0)
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
    key = stable_hash(items["pair_id"].tolist(), cfg.fingerprint(dtype))
    return ChunkStore(Path(work_root) / f"intra-{key}", items, cfg.batch_size)


def generate_intra(cfg: IntraConfig, seed: int, replicates: Sequence[int] = (0,), *, prepared: str | Path, rewritten: str | Path,
                   generator_dir: str | Path, out_dir: str | Path, work_root: str | Path,
                   ranks: Ranks | None = None) -> pd.DataFrame | None:
    """Generate the IntraAug pairs into `out_dir`; rank 0 assembles and returns the manifest."""
    cfg.require_resolved()
    ranks = ranks or Ranks.from_env()
    edits = read_rewritten(rewritten)
    sources = real_sources(prepared, edits["source_pair_id"], rewritten)
    gen_sha = generator_sha(generator_dir)
    device = stage_device(ranks)
    dtype = generation_dtype(cfg.dtype, device)
    store = intra_store(cfg, seed, edits, gen_sha, work_root, dtype, replicates)
    items = store.items
    path, _ = resolve(generator_dir)
    pipe = load_generator(path, dtype=dtype, device=device)
    make = make_intra_chunk(pipe, cfg, stored_image_size(prepared), gen_sha, sources)
    done = len(items) - sum(len(store.chunk(k)) for k in store.todo())
    with progress_bar(len(items), done, "intra-generate") as bar:
        made = run_chunks(store, make, ranks.rank, ranks.world, bar.update)
    log.info("intra: generated %d pairs, %d reused from an interrupted run", made, done)
    if not ranks.is_main:
        return None
    store.wait_all()
    return store.assemble(out_dir, INTRA_COLUMNS)


# ------------------------------------------------------------------------------------------- metrics


def _mean_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1))) if len(a) else float("nan")


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
    path, _ = resolve(generator_dir)
    device = stage_device()
    pipe = load_generator(path, dtype=generation_dtype(cfg.dtype, device), device=device)
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
    patient = {
        "edited_vs_source_film": _mean_cos(f_edit, f_real),
        "kept_edited_vs_source_film": _mean_cos(f_edit[is_kept], f_real[is_kept]) if is_kept.any() else None,
        "fresh_vs_random_film": _mean_cos(f_fresh, f_random),
        "fresh_vs_source_film": _mean_cos(f_fresh, f_real[ref_pos]),
        "source_branch_vs_source_film": _mean_cos(f_branch, f_real),
        "edited_vs_source_branch": _mean_cos(f_edit, f_branch),
        "reference": "intra reports drawn from fresh per-pair noise (InterAug's sampling), "
                     f"{len(ref)} pairs, against random real films of the same split",
    }
    patient["keeps_patient"] = patient["edited_vs_source_film"] > patient["fresh_vs_random_film"]

    probe, thresholds = fit_readout_probe(probe_films, reader="judge")  # not the reader prune selected with
    old = src.reset_index(drop=True)
    new = _new_labels(rewritten, manifest)
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
