"""Turning an arbitrary digit picture into an MNIST-style 28x28 image.

MNIST was made by size-normalising each digit into a 20x20 box (keeping its
aspect ratio, anti-aliased) and centring its centre of mass in a 28x28 field,
light ink on a dark background. A photo of a digit on paper is the opposite
polarity, any size, and off-centre; ``to_mnist`` undoes all of that so the
trained network sees what it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digits.artifacts import why_unreadable
from digits.errors import PipelineError
from digits.mnist import IMAGE_SIDE

FIELD, BOX = IMAGE_SIDE, 20  # MNIST's digits fill a 20 x 20 box inside the 28 x 28 field
MIN_CONTRAST = 40  # grey levels between background and ink below which an image counts as blank
MAX_PIXELS = 64_000_000  # 8000 x 8000: larger than any camera's picture of a digit needs; checked before decoding
# Pillow's own guard (DecompressionBombError from Image.open) gives way to MAX_PIXELS, checked right after
# opening, before any decoding, with a message that names the picture's size.
Image.MAX_IMAGE_PIXELS = None
WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}  # 16-bit grey: full scale


class ImageError(PipelineError):
    """A picture that cannot be read or holds no digit."""


class ImageTooLarge(ImageError):
    """A picture with more pixels than allowed, or than memory holds (a server answers 413 to it)."""


def load_grayscale(path: Path | str) -> np.ndarray:
    """Any PNG/JPEG file (colour, grey, 16-bit, with alpha, rotated by EXIF) as float grey levels 0-255."""
    path = Path(path)
    problem = why_unreadable(path)
    if problem:
        raise ImageError(f"{path}: {problem}")
    return decode_grayscale(path, name=str(path))


def decode_grayscale(source: Path | BinaryIO, *, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A picture (a file's path, or its bytes in ``io.BytesIO``, as a server receives them) as float grey levels
    0-255.

    ``name`` starts every error message. A picture with transparency gets
    its ink from the alpha channel: a digit drawn on a transparent background
    (white or black strokes) is the opaque part, whatever its colour. 16-bit
    and 32-bit grey levels are scaled to 0-255, never clipped (clipping turns
    every level above 255 white). The size is checked against ``max_pixels``
    from the header, before anything is decoded: a small file can claim a
    huge picture (a decompression bomb).
    """
    try:
        with Image.open(source) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"{name}: too large ({width} x {height} pixels, at most {max_pixels / 1_000_000:g} megapixels); "
                    "scale it down"
                )
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                alpha = np.asarray(image.convert("RGBA"), dtype=np.float32)[..., 3]
                if alpha.max() - alpha.min() >= MIN_CONTRAST:
                    return alpha  # opaque strokes on a transparent background: light ink on dark, as MNIST
                image = image.convert("RGB")  # alpha carries nothing: the colours do
            if image.mode in WIDE_MODES or image.mode in ("I", "F"):
                return wide_to_grey(np.asarray(image, dtype=np.float64), full_scale=WIDE_MODES.get(image.mode))
            return np.asarray(image.convert("L"), dtype=np.float32)
    except UnidentifiedImageError as error:
        reason = error if isinstance(source, Path) else "not in any format Pillow reads; send a PNG or JPEG"
        raise ImageError(f"{name}: not a readable image ({reason})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{name}: not a readable image ({error})") from None
    except MemoryError:
        raise ImageTooLarge(f"{name}: too large to decode in this machine's memory") from None


def wide_to_grey(levels: np.ndarray, *, full_scale: int | None) -> np.ndarray:
    """16-bit, 32-bit or float grey levels as 0-255, scaled by the format's full scale (or the 16-bit one, or the
    image's
    own maximum).
    """
    if full_scale is None:
        top = float(levels.max(initial=0))
        full_scale = 255 if top <= 255 else 65535 if top <= 65535 else top
    return (np.clip(levels, 0, None) * (255.0 / full_scale)).astype(np.float32)


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
