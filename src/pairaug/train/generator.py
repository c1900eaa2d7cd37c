"""The `fit-generator` stage's logic: train the embedded text-to-image UNet, or adopt a checkpoint.

The embedded generator learns from the public pool (the stand-in for RoentGen's training data) and is
conditioned on the frozen text encoder of the scorer (`models/scorer`), so it shares its tokenizer. It
reads nothing of the target, so a change of the target (the scarcity curve) reuses it from DVC's run
cache. Its quality check (`probe_check`, run by the `check-priors` stage) generates images from the
target's *valid* reports (the test split is read by `evaluate` alone) and asks a pixel linear probe,
trained on the pool's real images, whether the conditioned findings are visible; the probe's AUC on the
real valid films is the ceiling.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPTextModel

from pairaug.data.phantom import FINDINGS
from pairaug.data.schema import read_pairs
from pairaug.hashing import seed_from, stable_hash
from pairaug.io import atomic_path
from pairaug.launch import stage_device
from pairaug.measurement.images import load_split_images, resize_batch
from pairaug.measurement.pixel_probe import CHECK_LABELS, PixelProbe, mean_auc
from pairaug.models.checkpoints import adopt_external, resolve
from pairaug.models.clip import check_folder
from pairaug.models.generator import (
    TextToImagePipeline,
    UNetArch,
    embedded_unet,
    load_generator,
    train_scheduler,
)
from pairaug.params import Params, Positive
from pairaug.train.diffusion import DiffusionTrainConfig, train_unet

log = logging.getLogger(__name__)

@dataclass
class GeneratorCheck(Params):
    reports: Annotated[int, Positive] = 300  # target valid reports to generate from (at most)
    steps: Annotated[int, Positive] = 20
    guidance: Annotated[float, Positive] = 3.5


@dataclass
class GeneratorConfig(Params):
    checkpoint: str | None = None  # a Stable Diffusion–format folder (RoentGen); null trains the embedded one
    arch: UNetArch = field(default_factory=UNetArch)
    train: DiffusionTrainConfig = field(default_factory=DiffusionTrainConfig)
    check: GeneratorCheck = field(default_factory=GeneratorCheck)


def fit_generator(cfg: GeneratorConfig, seed: int, pool_path: str | Path, scorer_dir: str | Path,
                  out_dir: str | Path) -> dict:
    """Write the generator folder `out_dir` (trained on the pool's train split); return the fit's summary."""
    pool_path = Path(pool_path)
    if cfg.checkpoint:
        src = check_folder(cfg.checkpoint, "generator.checkpoint")
        load_generator(src)  # a folder diffusers cannot load fails here, not in the first generate stage
        adopt_external(out_dir, src, "diffusers")
        info: dict = {"external": str(cfg.checkpoint)}
    else:
        text_dir, _ = resolve(scorer_dir)
        text_encoder = CLIPTextModel.from_pretrained(text_dir, local_files_only=True).eval().requires_grad_(False)
        tokenizer = AutoTokenizer.from_pretrained(text_dir, local_files_only=True)
        pool = read_pairs(pool_path)
        train = pool[pool["split"] == "train"]
        images = load_split_images(train, pool_path.parent)
        size = int(images.shape[-1])
        torch.manual_seed(seed)
        unet = embedded_unet(cfg.arch, size, text_encoder.config.hidden_size)
        scheduler = train_scheduler()
        pipe = TextToImagePipeline(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        pipe.to(stage_device())
        pipe.unet = train_unet(pipe, images, train["report"].tolist(), cfg.train, seed, scheduler)
        with atomic_path(out_dir) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
        info = {"params": int(sum(p.numel() for p in unet.parameters())), "train_steps": cfg.train.steps,
                "train_pairs": len(train)}
    return info


def probe_check(pipe: TextToImagePipeline, probe_pairs, probe_root: Path, check_pairs, check_root: Path,
                check: GeneratorCheck, seed: int, height: int | None = None, batch_size: int = 64) -> dict:
    """Generate from `check_pairs`' reports; a pixel probe fit on the real films of `probe_pairs` reads their
    labels (`real_auc`: the same probe on `check_pairs`' own films, the ceiling). `height` (None: the
    generator's native size) and `batch_size` (prompts per call) as generation runs."""
    labels = [label for label in FINDINGS if 0 < (probe_pairs[label] == 1).sum() < len(probe_pairs)]
    targets = {label: probe_pairs[label].fillna(0).to_numpy() == 1 for label in labels}
    probe = PixelProbe(labels).fit(load_split_images(probe_pairs, probe_root).numpy(), targets)
    sample = check_pairs.sample(n=min(check.reports, len(check_pairs)), random_state=seed).sort_values("pair_id")
    size = int(load_gray_size(check_root, check_pairs))
    seeds = [seed_from("generator-check", seed, pid) for pid in sample["pair_id"]]
    images = []
    for start in range(0, len(sample), batch_size):
        out = pipe(sample["report"].iloc[start:start + batch_size].tolist(), seeds[start:start + batch_size],
                   num_inference_steps=check.steps, guidance_scale=check.guidance, height=height)
        images.append(resize_batch(out, size))
    generated = np.concatenate(images)
    sample_targets = {label: sample[label].fillna(0).to_numpy() == 1 for label in labels}
    gen_auc = probe.auc(generated, sample_targets)
    real_auc = probe.auc(load_split_images(sample, check_root).numpy(), sample_targets)
    checked = {k: gen_auc[k] for k in CHECK_LABELS if k in gen_auc}
    return {"generated_auc": gen_auc, "real_auc": real_auc, "mean_auc_checked": mean_auc(checked),
            "real_mean_auc_checked": mean_auc({k: real_auc[k] for k in checked}),
            "checked_labels": list(checked), "reports": len(sample), "steps": check.steps,
            "guidance": check.guidance, "sample_sha": stable_hash(sample["pair_id"].tolist())}


def load_gray_size(root: Path, pairs) -> int:
    from pairaug.data.images import load_gray

    return load_gray(root / pairs["image"].iloc[0]).shape[0]
