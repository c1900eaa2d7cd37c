"""Load any radiograph as one 8-bit gray channel, and fit it to the pipeline's square size.

Handles mode "L", RGB/RGBA with gray content, 16-bit and 32-bit integer PNG/TIFF, JPEG, and DICOM
(modality + VOI LUT, MONOCHROME1 inverted). Every failure names the file. A source film must be at
least `MIN_FILM_SIDE` px on each side (`load_film`): anything smaller holds no film to learn from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pairaug.errors import InputError

DICOM_SUFFIXES = {".dcm", ".dicom"}
# Smaller sources would be stretched into a flat blur at data.image_size (a 1x1 image became a uniform
# 32x32 "film"): a thumbnail, an icon or a broken export, never a radiograph.
MIN_FILM_SIDE = 16


def load_gray(path: str | Path) -> np.ndarray:
    """Return the image at `path` as a 2-D uint8 array."""
    path = Path(path)
    if not path.exists():
        raise InputError("image file not found", file=path)
    if path.suffix.lower() in DICOM_SUFFIXES or _is_dicom(path):
        return _load_dicom(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _to_gray8(im, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot decode image: {e}", file=path) from None


def load_film(path: str | Path) -> np.ndarray:
    """A source radiograph as `load_gray` reads it, refused when a side is under `MIN_FILM_SIDE` px."""
    gray = load_gray(path)
    h, w = gray.shape
    if min(h, w) < MIN_FILM_SIDE:
        raise InputError(f"image is {w}x{h} px; a source film must be at least {MIN_FILM_SIDE} px on each side",
                         file=path)
    return gray


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _to_gray8(im: Image.Image, path: Path) -> np.ndarray:
    if im.mode in ("L", "P", "LA", "1"):
        return np.asarray(im.convert("L"))
    if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        return np.asarray(im.convert("L"))  # ITU-R 601 luma; exact for gray content
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _rescale(np.asarray(im).astype(np.float64))
    raise InputError(f"unsupported image mode {im.mode!r}", file=path)


def _rescale(a: np.ndarray) -> np.ndarray:
    """Min-max window a high-bit-depth image to 0..255."""
    lo, hi = float(np.min(a)), float(np.max(a))
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip(np.round((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _load_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises many types for damaged files
        raise InputError(f"cannot decode DICOM: {e}", file=path) from None
    if arr.ndim == 3 and getattr(ds, "SamplesPerPixel", 1) == 1:
        arr = arr[0]  # multi-frame: the first frame
    if arr.ndim == 3:
        arr = arr.mean(axis=-1)
    arr = apply_voi_lut(apply_modality_lut(arr, ds), ds).astype(np.float64)
    if getattr(ds, "PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
        arr = arr.max() - arr
    return _rescale(arr)


def fit_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Pad to a square with black (keeping the aspect ratio, as CheXzero and MedCLIP do), then resize."""
    h, w = gray.shape
    side = max(h, w)
    canvas = np.zeros((side, side), dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = gray
    if side == size:
        return canvas
    return np.asarray(Image.fromarray(canvas).resize((size, size), Image.Resampling.LANCZOS))


def read_png_gray(path: str | Path) -> np.ndarray:
    """Read a pipeline PNG (already gray and sized) as uint8."""
    return load_gray(path)
