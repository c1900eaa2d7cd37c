"""MedCLIP (Wang et al., 2022; the paper's pruning scorer) built from local files with transformers.

The `medclip` package reaches the Hub when it builds its towers and moves inputs with `.cuda()`; here
the same architecture is built from a local folder and nothing is downloaded:

    <folder>/pytorch_model.bin   MedCLIP's weights (text_model.*, vision_model.*, logit_scale)
    <folder>/text/               Bio_ClinicalBERT's config.json and tokenizer files
    <folder>/vision/             Swin-tiny's (patch 4, window 7, 224 px) config.json

Text: BERT's hidden states 1, 2 and the last, averaged over token positions and the three layers, then a
768 → 512 linear projection (no bias); vision: Swin's pooled output, 768 → 512 (no bias). The weights
load strictly: only non-persistent buffers the file may still carry (BERT's `position_ids`, which
transformers ≥ 4.31 no longer saves: MedCLIP issue #37) are dropped, anything else missing or extra is
refused, naming the keys.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertConfig, PreTrainedTokenizerBase, SwinConfig

from pairaug.data.images import fit_square
from pairaug.errors import InputError

WEIGHTS = "pytorch_model.bin"
TEXT_DIR, VISION_DIR = "text", "vision"
FILES = (WEIGHTS, f"{TEXT_DIR}/config.json", f"{VISION_DIR}/config.json")  # what a MedCLIP folder must hold
IMAGE_SIZE = 224
MAX_LENGTH = 77
MEAN, STD = 0.5862786, 0.2795009  # MedCLIP's normalisation of its one-channel films
PROJECTION_DIM = 512


class _Tower(nn.Module):
    """A transformers backbone and its projection: MedCLIP's `<tower>.model` / `<tower>.projection_head`."""

    def __init__(self, config, projection_dim: int):
        super().__init__()
        self.model = AutoModel.from_config(config)
        self.projection_head = nn.Linear(config.hidden_size, projection_dim, bias=False)


class MedClip(nn.Module):
    def __init__(self, text_config, vision_config, projection_dim: int = PROJECTION_DIM):
        super().__init__()
        self.text_model = _Tower(text_config, projection_dim)
        self.vision_model = _Tower(vision_config, projection_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.text_model.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.hidden_states
        # MedCLIP's pooling: a plain mean over every position of the padded batch, then over the layers
        pooled = torch.stack([hidden[1], hidden[2], hidden[-1]]).mean(2).mean(0)
        return F.normalize(self.text_model.projection_head(pooled), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.shape[1] == 1:
            pixel_values = pixel_values.repeat(1, 3, 1, 1)
        pooled = self.vision_model.model(pixel_values=pixel_values).pooler_output
        return F.normalize(self.vision_model.projection_head(pooled), dim=-1)


def check_medclip_folder(folder: str | Path) -> Path:
    """`folder`, or a one-line error naming the first file it lacks (nothing here downloads)."""
    folder = Path(folder)
    for need in FILES:
        if not (folder / need).exists():
            raise InputError(f"MedCLIP folder lacks {need} (it holds {WEIGHTS}, {TEXT_DIR}/: Bio_ClinicalBERT's "
                             f"config and tokenizer, {VISION_DIR}/: Swin-tiny's config); this pipeline never "
                             "downloads weights", file=folder / need)
    return folder


def _configs(folder: Path):
    text = AutoConfig.from_pretrained(folder / TEXT_DIR, local_files_only=True)
    vision = AutoConfig.from_pretrained(folder / VISION_DIR, local_files_only=True)
    return text, vision


def load_medclip(folder: str | Path) -> tuple[MedClip, PreTrainedTokenizerBase]:
    """MedCLIP in eval mode (CPU, float32) with its tokenizer, from a local folder (module docstring)."""
    folder = check_medclip_folder(folder)
    text_config, vision_config = _configs(folder)
    model = MedClip(text_config, vision_config)
    weights = folder / WEIGHTS
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or not a state dict
        raise InputError(f"MedCLIP weights do not load: {type(e).__name__}: {str(e).splitlines()[0][:200]}",
                         file=weights) from None
    expected = model.state_dict()
    transient = {name for name, _ in model.named_buffers()} - set(expected)
    state = {k: v for k, v in state.items() if k not in transient and not k.endswith("position_ids")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{what} {len(keys)}: {', '.join(keys[:5])}{', …' if len(keys) > 5 else ''}"
                 for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise InputError("MedCLIP weights do not fit the architecture built from "
                         f"{TEXT_DIR}/ and {VISION_DIR}/: " + "; ".join(parts), file=weights)
    model.load_state_dict(state, strict=True)
    tokenizer = AutoTokenizer.from_pretrained(folder / TEXT_DIR, local_files_only=True)
    return model.eval(), tokenizer


def medclip_pixels(gray: np.ndarray) -> torch.Tensor:
    """uint8 films (N, H, W) → MedCLIP's input (N, 1, 224, 224): padded square, resized, normalised."""
    films = np.stack([_square(g) for g in gray]) if len(gray) else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE))
    x = torch.from_numpy(films.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - MEAN) / STD


def _square(gray: np.ndarray) -> np.ndarray:
    canvas = fit_square(gray, max(gray.shape))  # padded with black, not resized
    if canvas.shape[0] == IMAGE_SIZE:
        return canvas
    return np.asarray(Image.fromarray(canvas).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))


def published_configs() -> tuple[BertConfig, SwinConfig]:
    """The towers' published architectures (Bio_ClinicalBERT: BERT-base, cased 28,996-token vocabulary;
    Swin-tiny: patch 4, window 7, 224 px), for building random-weight folders of MedCLIP's real size."""
    return BertConfig(vocab_size=28996), SwinConfig(image_size=224, patch_size=4, window_size=7, embed_dim=96,
                                                    depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24])


def save_random_medclip(folder: str | Path, text_config, vision_config, tokenizer: PreTrainedTokenizerBase,
                        seed: int = 0) -> Path:
    """A MedCLIP folder of the given architecture with random weights (shape and memory tests, benchmarks)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    model = MedClip(text_config, vision_config)
    text_config.save_pretrained(folder / TEXT_DIR)
    tokenizer.save_pretrained(folder / TEXT_DIR)
    vision_config.save_pretrained(folder / VISION_DIR)
    torch.save(model.state_dict(), folder / WEIGHTS)
    return folder
