"""A split's images as one batch, and generated images brought to the dataset's stored size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pairaug.data.images import load_gray


def load_split_images(pairs: pd.DataFrame, root: Path) -> torch.Tensor:
    """(N, H, W) uint8: the images of `pairs` (paths relative to `root`), in row order."""
    return torch.from_numpy(np.stack([load_gray(root / rel) for rel in pairs["image"]]))


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Generated images to the dataset's stored size (a no-op for the embedded generator)."""
    if images.shape[-1] == size:
        return images
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.LANCZOS)) for im in images])
