"""Digits drawn for people to look at: the most confidently misclassified test digits, augmented training digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.artifacts import atomic_path
from digits.mnist import IMAGE_SIDE

CELL = 84  # 28x28 digit shown at 3x
CAPTION = 16


def most_confident_errors(labels: np.ndarray, probabilities: np.ndarray, *, count: int) -> np.ndarray:
    """Indices of misclassified examples, most confident wrong prediction first (ties by index)."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.lexsort((wrong, -confidence))][:count]


def draw_misclassified_grid(
    path: Path | str, *, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, count: int
) -> int:
    """PNG grid of up to ``count`` errors, each captioned "true -> predicted (p)"; returns how many were drawn.

    ``images`` are the scaled (N, 784) arrays; each is stretched back to 0-255
    for display, dark digit on white so it reads like ink on paper.
    """
    chosen = most_confident_errors(labels, probabilities, count=count)
    columns = max(1, min(6, len(chosen)))
    rows = max(1, -(-len(chosen) // columns))
    sheet = Image.new("L", (columns * CELL, rows * (CELL + CAPTION)), color=255)
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default()
    for slot, index in enumerate(chosen):
        x, y = (slot % columns) * CELL, (slot // columns) * (CELL + CAPTION)
        sheet.paste(digit_tile(images[index], low=float(images[index].min()), high=float(images[index].max())), (x, y))
        predicted = int(probabilities[index].argmax())
        draw.text(
            (x + 4, y + CELL + 2),
            f"{labels[index]} -> {predicted} ({probabilities[index, predicted]:.2f})",
            fill=0,
            font=font,
        )
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return len(chosen)


def digit_tile(pixels: np.ndarray, *, low: float, high: float) -> Image.Image:
    """One scaled (784,) image as a CELL x CELL tile, ``low`` white and ``high`` black, like ink on paper."""
    span = (high - low) or 1.0
    digit = (255 - (np.clip(pixels, low, high) - low) / span * 255).round().astype(np.uint8)
    return Image.fromarray(digit.reshape(IMAGE_SIDE, IMAGE_SIDE)).resize((CELL, CELL), Image.NEAREST)


def draw_augmented_grid(
    path: Path | str, *, originals: np.ndarray, augmented: list[np.ndarray], scale: list[float], title: str
) -> None:
    """PNG: one row per training digit, its original first, then how it looks in each of the given epochs.

    ``originals`` (N, 784) and each of ``augmented`` (N, 784) are scaled to
    ``scale``; a shared grey scale keeps the background and ink comparable.
    """
    rows, columns = len(originals), 1 + len(augmented)
    sheet = Image.new("L", (columns * CELL, CAPTION + rows * CELL), color=255)
    ImageDraw.Draw(sheet).text((4, 2), title, fill=0, font=ImageFont.load_default())
    for row in range(rows):
        for column, images in enumerate([originals, *augmented]):
            sheet.paste(digit_tile(images[row], low=scale[0], high=scale[1]), (column * CELL, CAPTION + row * CELL))
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
