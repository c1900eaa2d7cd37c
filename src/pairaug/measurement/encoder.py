"""A pretrained CLIP folder with what measurement needs: text embeddings, and from one pass of the
vision tower both the frozen image features (linear probe) and the projected embeddings (zero-shot)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pairaug.launch import autocast, stage_device
from pairaug.models.clip import load_clip, text_embeddings


@dataclass
class ImageEncoding:
    features: np.ndarray  # pooled vision features (linear probe)
    embeddings: np.ndarray  # projected, L2-normalised (zero-shot)


class VisionLanguageModel:
    def __init__(self, folder: str | Path, batch_size: int = 128, device: str | torch.device | None = None):
        self.model, self.tokenizer, self.preprocess = load_clip(folder)
        self.device = torch.device(device) if device is not None else stage_device()
        self.model.to(self.device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        with autocast(self.device):
            return text_embeddings(self.model, self.tokenizer, texts).numpy()

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> ImageEncoding:
        """One pass of the vision tower: the pooled features a linear probe reads and, through the
        projection, the embeddings zero-shot compares with prompts (what `get_image_features` returns)."""
        with autocast(self.device):
            pooled = torch.cat([self.model.vision_model(pixel_values=self.preprocess(images[s:s + self.batch_size])
                                                        .to(self.device)).pooler_output
                                for s in range(0, len(images), self.batch_size)])
            projected = F.normalize(self.model.visual_projection(pooled).float(), dim=-1)
        return ImageEncoding(pooled.float().cpu().numpy(), projected.cpu().numpy())
