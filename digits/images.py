"""Turning an arbitrary digit picture into an MNIST-style 28x28 image.

MNIST was made by size-normalising each digit into a 20x20 box (keeping its
aspect ratio, anti-aliased) and centring its centre of mass in a 28x28 field,
light ink on a dark background. A photo of a digit on paper is the opposite
polarity, any size, and off-centre; ``to_mnist`` undoes all of that so the
trained network sees what it was trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.errors import PipelineError

FIELD, BOX = 28, 20
MIN_CONTRAST = 40  # grey levels between background and ink below which an image counts as blank


class ImageError(PipelineError):
    """A picture that cannot be read or holds no digit."""


def load_grayscale(path: Path | str) -> np.ndarray:
    """Any PNG/JPEG (colour, grayscale, with alpha, rotated by EXIF) as float grey levels 0-255."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: file not found")
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, rgba)  # transparent areas become paper
            return np.asarray(image.convert("L"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from None


def to_mnist(gray: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Grey levels (H, W) -> uint8 (28, 28), light digit on black, as MNIST."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    ink = background - gray if background > 127 else gray - background  # invert dark-on-light
    ink = np.clip(ink, 0, None)
    if ink.max() < MIN_CONTRAST:
        raise ImageError(f"{name}: blank image (no stroke stands out from the background)")
    ink = ink / ink.max() * 255.0
    rows, cols = np.nonzero(ink > 0.2 * 255.0)
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]

    height, width = crop.shape
    factor = BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    boxed = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.LANCZOS), dtype=np.float32)
    boxed = np.clip(boxed, 0, 255)

    field = np.zeros((FIELD, FIELD), np.float32)
    total = boxed.sum()
    centre_row = (boxed.sum(axis=1) @ np.arange(boxed.shape[0])) / total
    centre_col = (boxed.sum(axis=0) @ np.arange(boxed.shape[1])) / total
    top = int(np.clip(round(FIELD / 2 - 0.5 - centre_row), 0, FIELD - boxed.shape[0]))
    left = int(np.clip(round(FIELD / 2 - 0.5 - centre_col), 0, FIELD - boxed.shape[1]))
    field[top : top + boxed.shape[0], left : left + boxed.shape[1]] = boxed
    return field.round().astype(np.uint8)
