"""The scorer interface used for pruning: L2-normalised image and text embeddings, batched, no gradients.

Implementations: any transformers CLIP folder (the embedded default, OpenAI CLIP, a user's medical
CLIP), and MedCLIP behind an optional import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from pairaug.data.images import load_gray
from pairaug.errors import PairaugError
from pairaug.models.checkpoints import resolve
from pairaug.models.clip import features, load_clip, text_embeddings, text_max_length


class Scorer(Protocol):
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray: ...

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


def _as_gray_batch(images: np.ndarray | list[str | Path]) -> np.ndarray:
    if isinstance(images, np.ndarray):
        return images
    return np.stack([load_gray(p) for p in images])


class ClipScorer:
    """A transformers `CLIPModel` folder as a scorer."""

    def __init__(self, folder: str | Path, batch_size: int = 512):
        self.model, self.tokenizer, self.preprocess = load_clip(folder)
        self.batch_size = batch_size
        self.max_length = text_max_length(self.model, self.tokenizer)

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = _as_gray_batch(images[start:start + self.batch_size])
            feats = self.model.get_image_features(pixel_values=self.preprocess(chunk))
            out.append(F.normalize(features(feats), dim=-1))
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.projection_dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            out.append(text_embeddings(self.model, self.tokenizer, texts[start:start + self.batch_size], self.max_length))
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.projection_dim), np.float32)


class MedClipScorer:
    """MedCLIP (Swin-tiny + Bio_ClinicalBERT) from a local weights folder, on CPU or GPU.

    MedCLIP's package downloads weights from its own storage and calls `.cuda()`; this adapter loads
    the state dict from `folder` instead and keeps the device the caller chooses.
    """

    def __init__(self, folder: str | Path, batch_size: int = 64, device: str | None = None):
        try:
            from medclip import MedCLIPModel, MedCLIPProcessor, MedCLIPVisionModelViT  # type: ignore
        except ImportError:
            raise PairaugError("scorer.kind is 'medclip' but the `medclip` package is not installed: "
                               "pip install 'pairaug[medclip]' (and put its weights in a local folder)") from None
        weights = Path(folder) / "pytorch_model.bin"
        if not weights.exists():
            raise PairaugError(f"MedCLIP weights not found: {weights} (this pipeline never downloads weights)")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = MedCLIPModel(vision_cls=MedCLIPVisionModelViT)
        self.model.load_state_dict(torch.load(weights, map_location="cpu"), strict=False)
        self.model.to(self.device).eval()
        self.processor = MedCLIPProcessor()
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | list[str | Path]) -> np.ndarray:
        from PIL import Image

        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = [Image.fromarray(a) for a in _as_gray_batch(images[start:start + self.batch_size])]
            px = self.processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.device)
            out.append(F.normalize(self.model.encode_image(px), dim=-1).cpu())
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tok = self.processor(text=list(texts[start:start + self.batch_size]), return_tensors="pt", padding=True)
            ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
            out.append(F.normalize(self.model.encode_text(ids, mask), dim=-1).cpu())
        return torch.cat(out).numpy()


def load_scorer(folder: str | Path, batch_size: int = 512) -> Scorer:
    """The scorer in `folder` (`models/scorer`): trained here, or the external checkpoint it points to."""
    path, kind = resolve(folder)
    if kind == "medclip":
        return MedClipScorer(path)
    return ClipScorer(path, batch_size=batch_size)
