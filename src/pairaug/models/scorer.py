"""The scorer interface used for pruning: L2-normalised image and text embeddings, batched, no gradients.

Implementations: any transformers CLIP folder (the embedded default, OpenAI CLIP, a user's medical
CLIP), and MedCLIP from a local folder (models/medclip.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pairaug.data.images import load_gray
from pairaug.launch import autocast, stage_device
from pairaug.models.checkpoints import resolve
from pairaug.models.clip import features, load_clip, text_embeddings, text_max_length
from pairaug.models.medclip import MAX_LENGTH, PROJECTION_DIM, load_medclip, medclip_pixels


class Scorer(Protocol):
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def _as_gray_batch(images: np.ndarray | list[str | Path]) -> np.ndarray:
    if isinstance(images, np.ndarray):
        return images
    return np.stack([load_gray(p) for p in images])


class ClipScorer:
    """A transformers `CLIPModel` folder as a scorer."""

    def __init__(self, folder: str | Path, batch_size: int = 512, device: str | torch.device | None = None):
        self.model, self.tokenizer, self.preprocess = load_clip(folder)
        self.device = torch.device(device) if device is not None else stage_device()
        self.model.to(self.device)
        self.batch_size = batch_size
        self.max_length = text_max_length(self.model, self.tokenizer)

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = _as_gray_batch(images[start:start + self.batch_size])
            with autocast(self.device):
                feats = self.model.get_image_features(pixel_values=self.preprocess(chunk).to(self.device))
            out.append(F.normalize(features(feats).float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.projection_dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            with autocast(self.device):
                out.append(text_embeddings(self.model, self.tokenizer, texts[start:start + self.batch_size],
                                           self.max_length))
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.projection_dim), np.float32)


class MedClipScorer:
    """MedCLIP from a local folder (models/medclip.py: built with transformers, nothing downloaded)."""

    def __init__(self, folder: str | Path, batch_size: int = 64, device: str | torch.device | None = None):
        self.model, self.tokenizer = load_medclip(folder)
        self.device = torch.device(device) if device is not None else stage_device()
        self.model.to(self.device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray:
        with autocast(self.device):
            out = [self.model.encode_image(medclip_pixels(_as_gray_batch(images[s:s + self.batch_size])).to(self.device))
                   for s in range(0, len(images), self.batch_size)]
        return torch.cat(out).float().cpu().numpy() if out else np.zeros((0, PROJECTION_DIM), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                 max_length=MAX_LENGTH, return_tensors="pt")
            with autocast(self.device):
                out.append(self.model.encode_text(tok["input_ids"].to(self.device),
                                                  tok["attention_mask"].to(self.device)))
        return torch.cat(out).float().cpu().numpy() if out else np.zeros((0, PROJECTION_DIM), np.float32)


def load_scorer(folder: str | Path, batch_size: int = 512, device: str | torch.device | None = None) -> Scorer:
    """The scorer in `folder` (`models/scorer`): trained here, or the external checkpoint it points to; on
    `device` (None: the stage's, `launch.device`)."""
    path, kind = resolve(folder)
    if kind == "medclip":
        return MedClipScorer(path, device=device)
    return ClipScorer(path, batch_size=batch_size, device=device)
