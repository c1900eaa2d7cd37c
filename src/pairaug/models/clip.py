"""CLIP in transformers terms: the embedded small config, loading from a folder, image preprocessing.

The same `transformers.CLIPModel` serves as the pruning scorer and as the VLP model. The embedded
default is small enough to train in minutes on 2 CPU cores; the real setting (ViT-B/32 image encoder,
12-layer 512-wide 8-head text encoder) loads from an OpenAI CLIP folder through the same code.

Image preprocessing (one rule for every checkpoint): gray uint8 → float in [0, 1] → repeated to the
vision tower's channels → resized (bicubic) to its `image_size` → normalised with `image_mean` /
`image_std` from the folder's `preprocessor_config.json` when it has one, else CLIP's constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedTokenizerBase

from pairaug.errors import InputError
from pairaug.models.tokenizer import BOS_ID, EOS_ID, PAD_ID
from pairaug.params import Params

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ClipArch(Params):
    """The embedded CLIP's size (ignored when a checkpoint folder is given)."""

    projection_dim: int = 128
    text_hidden: int = 128
    text_mlp: int = 256
    text_layers: int = 2
    text_heads: int = 4
    max_positions: int = 64
    vision_hidden: int = 128
    vision_mlp: int = 256
    vision_layers: int = 4
    vision_heads: int = 4
    patch_size: int = 4
    channels: int = 1


def embedded_config(arch: ClipArch, vocab_size: int, image_size: int) -> CLIPConfig:
    text = dict(vocab_size=vocab_size, hidden_size=arch.text_hidden, intermediate_size=arch.text_mlp,
                num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
                max_position_embeddings=arch.max_positions, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                eos_token_id=EOS_ID, projection_dim=arch.projection_dim)
    vision = dict(hidden_size=arch.vision_hidden, intermediate_size=arch.vision_mlp,
                  num_hidden_layers=arch.vision_layers, num_attention_heads=arch.vision_heads,
                  image_size=image_size, patch_size=arch.patch_size, num_channels=arch.channels,
                  projection_dim=arch.projection_dim)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=arch.projection_dim)


def check_folder(folder: str | Path, what: str) -> Path:
    """A local model folder, or a clear error: nothing here downloads weights."""
    path = Path(folder)
    if not (path / "config.json").exists() and not (path / "model_index.json").exists():
        raise InputError(f"{what}: no local model folder (config.json) at {path}; this pipeline never downloads "
                         "weights — download the checkpoint yourself and point params at its folder", file=path)
    return path


def load_clip(folder: str | Path) -> tuple[CLIPModel, PreTrainedTokenizerBase, ImagePreprocessor]:
    """Load a CLIP checkpoint folder (ours or OpenAI's) with its tokenizer and preprocessing."""
    path = check_folder(folder, "CLIP checkpoint")
    model = CLIPModel.from_pretrained(str(path), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model.eval()
    return model, tokenizer, ImagePreprocessor.from_folder(path, model.config.vision_config)


class ImagePreprocessor:
    """Gray uint8 images → normalised tensors for a CLIP vision tower (see the module docstring)."""

    def __init__(self, image_size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...]):
        self.image_size, self.channels = image_size, channels
        self.mean = torch.tensor(_fit(mean, channels)).view(1, channels, 1, 1)
        self.std = torch.tensor(_fit(std, channels)).view(1, channels, 1, 1)

    @classmethod
    def from_folder(cls, folder: Path, vision_config) -> ImagePreprocessor:
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        cfg_file = folder / "preprocessor_config.json"
        if cfg_file.exists():
            cfg = json.loads(cfg_file.read_text())
            mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
        return cls(vision_config.image_size, vision_config.num_channels, mean, std)

    def save(self, folder: str | Path) -> None:
        """Write `preprocessor_config.json` in the CLIPImageProcessor format."""
        cfg = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": self.image_size},
               "crop_size": {"height": self.image_size, "width": self.image_size}, "do_center_crop": True,
               "do_normalize": True, "image_mean": self.mean.flatten().tolist(), "image_std": self.std.flatten().tolist(),
               "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3}
        Path(folder, "preprocessor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(N, H, W) uint8 → (N, C, S, S) float32."""
        x = torch.as_tensor(images)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        x = x.unsqueeze(1) if x.dim() == 3 else x
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False).clamp(0, 1)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1)
        return (x - self.mean) / self.std


def _fit(values: tuple[float, ...], channels: int) -> list[float]:
    values = list(values)
    if len(values) == channels:
        return values
    if channels == 1:
        return [float(np.mean(values))]
    return (values * channels)[:channels]


def features(out) -> torch.Tensor:
    """Projected features from `get_image_features` / `get_text_features` (a tensor in transformers 4,
    a model output whose pooler_output holds them in transformers 5)."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    return tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")


def text_max_length(model: CLIPModel, tokenizer: PreTrainedTokenizerBase) -> int:
    return min(model.config.text_config.max_position_embeddings, tokenizer.model_max_length or 77)


def text_embeddings(model: CLIPModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                    max_length: int | None = None) -> torch.Tensor:
    """L2-normalised projected text embeddings (N, D) of `texts`, as zero-shot and pruning compare them."""
    tok = tokenize(tokenizer, texts, max_length or text_max_length(model, tokenizer))
    e = features(model.get_text_features(input_ids=tok["input_ids"].to(model.device),
                                         attention_mask=tok["attention_mask"].to(model.device)))
    return F.normalize(e.float(), dim=-1).cpu()
