"""Drawing the grid of the most confidently misclassified test digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digits.artifacts import atomic_path

CELL = 84  # 28x28 digit shown at 3x
CAPTION = 16


def most_confident_errors(labels: np.ndarray, probabilities: np.ndarray, *, count: int) -> np.ndarray:
    """Indices of misclassified examples, most confident wrong prediction first (ties by index)."""
    predictions = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predictions != labels)
    confidence = probabilities[wrong, predictions[wrong]]
    return wrong[np.lexsort((wrong, -confidence))][:count]


def draw_misclassified_grid(path: Path | str, *, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, count: int) -> int:
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
        pixels = images[index].reshape(28, 28)
        span = float(pixels.max() - pixels.min()) or 1.0
        digit = (255 - (pixels - pixels.min()) / span * 255).round().astype(np.uint8)
        x, y = (slot % columns) * CELL, (slot // columns) * (CELL + CAPTION)
        sheet.paste(Image.fromarray(digit).resize((CELL, CELL), Image.NEAREST), (x, y))
        predicted = int(probabilities[index].argmax())
        draw.text((x + 4, y + CELL + 2), f"{labels[index]} -> {predicted} ({probabilities[index, predicted]:.2f})", fill=0, font=font)
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return len(chosen)
