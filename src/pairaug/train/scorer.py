"""The `fit-scorer` stage's logic: train the embedded CLIP on the train split it is given (the public
pool), or adopt a checkpoint.

The scorer is also the text encoder of the embedded generator and the template of the VLP model, so
its tokenizer (learned on the training reports) is saved with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import CLIPModel

from pairaug.data.images import load_gray
from pairaug.data.schema import read_pairs
from pairaug.errors import InputError
from pairaug.io import atomic_path
from pairaug.measurement.images import load_split_images
from pairaug.models.checkpoints import adopt_external
from pairaug.models.clip import (
    ClipArch,
    ImagePreprocessor,
    check_folder,
    embedded_config,
    text_max_length,
    tokenize,
)
from pairaug.models.medclip import FILES as MEDCLIP_FILES
from pairaug.models.scorer import Scorer
from pairaug.models.tokenizer import train_tokenizer
from pairaug.params import Params
from pairaug.train.contrastive import ContrastiveConfig, clip_loss, train_clip

log = logging.getLogger(__name__)


@dataclass
class ScorerConfig(Params):
    checkpoint: str | None = None  # a CLIP / MedCLIP folder to use as-is; null trains the embedded one
    kind: Literal["clip", "medclip"] = "clip"
    vocab_size: int = 1000
    arch: ClipArch = field(default_factory=ClipArch)
    train: ContrastiveConfig = field(default_factory=ContrastiveConfig)


def valid_loss_fn(tokenizer, preprocess, images: torch.Tensor, texts: list[str], batch: int = 256):
    """Selection score on the valid split: minus the mean contrastive loss over fixed batches."""
    def score(model: CLIPModel) -> float:
        tok = tokenize(tokenizer, texts, text_max_length(model, tokenizer))
        losses = []
        for s in range(0, len(texts), batch):
            sl = slice(s, s + batch)
            if len(texts[sl]) < 2:
                continue
            losses.append(clip_loss(model, preprocess(images[sl]), tok["input_ids"][sl], tok["attention_mask"][sl]).item())
        return -float(np.mean(losses))
    return score


def fit_scorer(cfg: ScorerConfig, seed: int, pairs_path: str | Path, out_dir: str | Path) -> dict:
    """Write `out_dir` (a CLIP folder) and return the fit's summary."""
    pairs_path = Path(pairs_path)
    root = pairs_path.parent
    pairs = read_pairs(pairs_path)
    if cfg.checkpoint:
        src = check_folder(cfg.checkpoint, "scorer.checkpoint") if cfg.kind == "clip" else Path(cfg.checkpoint)
        # A MedCLIP folder has no config.json; still fail here, not after adopting an empty pointer.
        missing = [f for f in MEDCLIP_FILES if not (src / f).exists()] if cfg.kind == "medclip" else []
        if missing:
            raise InputError(f"scorer.checkpoint: this local MedCLIP folder lacks {missing[0]} (models/medclip.py "
                             "says what it holds); this pipeline never downloads weights", file=src)
        log.info("using the external scorer %s (nothing trained)", src)
        return {"external": adopt_external(out_dir, src, cfg.kind)}
    train = pairs[pairs["split"] == "train"]
    valid = pairs[pairs["split"] == "valid"]
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(train["report"].tolist(), cfg.vocab_size, cfg.arch.max_positions)
    image_size = int(load_gray(root / train["image"].iloc[0]).shape[0])
    model = CLIPModel(embedded_config(cfg.arch, len(tokenizer), image_size))
    train_images = load_split_images(train, root)
    preprocess = ImagePreprocessor(image_size, cfg.arch.channels, (float(train_images.float().mean() / 255),),
                                   (float(train_images.float().std() / 255),))
    valid_images = load_split_images(valid, root)
    select = valid_loss_fn(tokenizer, preprocess, valid_images, valid["report"].tolist())
    model, history = train_clip(model, tokenizer, preprocess, train_images, train["report"].tolist(), cfg.train,
                                seed, select)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        preprocess.save(tmp)
    return {"history": history.as_dict(), "params": int(sum(p.numel() for p in model.parameters()))}


def alignment_gap(scorer: Scorer, images: np.ndarray, texts: list[str], seed: int) -> dict:
    """Mean cosine of matched pairs minus that of shuffled pairs (a scorer that reads the images: > 0)."""
    img = scorer.encode_images(images)
    txt = scorer.encode_texts(texts)
    matched = (img * txt).sum(1)
    perm = np.random.default_rng(seed).permutation(len(texts))
    shuffled = (img * txt[perm]).sum(1)
    return {"matched_cos": float(matched.mean()), "shuffled_cos": float(shuffled.mean()),
            "gap": float(matched.mean() - shuffled.mean()), "pairs": len(texts)}
