"""digits/plots.py: the misclassified grid shows the most confident errors first, captioned; the augmented grid's
layout.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digits.plots import CAPTION, CELL, digit_tile, draw_augmented_grid, draw_misclassified_grid, most_confident_errors


def test_the_most_confident_errors_come_first_and_right_answers_never():
    labels = np.array([0, 1, 2, 3])
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0, 0.0],  # right
            [0.7, 0.3, 0.0, 0.0],  # wrong, 0.7
            [0.0, 0.95, 0.05, 0.0],  # wrong, 0.95
            [0.0, 0.0, 0.7, 0.3],
        ]
    )  # wrong, 0.7 (a tie: by index)
    assert most_confident_errors(labels, probabilities, count=10).tolist() == [2, 1, 3]
    assert most_confident_errors(labels, probabilities, count=2).tolist() == [2, 1]


def test_a_digit_tile_is_dark_ink_on_white_at_three_times_size():
    pixels = np.zeros(784, np.float32)
    pixels[14 * 28 + 14] = 1.0  # one lit pixel in the middle
    tile = np.asarray(digit_tile(pixels, low=0.0, high=1.0))
    assert tile.shape == (CELL, CELL) and tile[0, 0] == 255 and tile[14 * 3 + 1, 14 * 3 + 1] == 0


def test_the_misclassified_grid_has_one_captioned_cell_per_error(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((20, 784), np.float32)
    labels = np.zeros(20, np.int64)
    probabilities = np.tile([0.2, 0.8] + [0.0] * 8, (20, 1))  # every image predicted 1: twenty errors
    drawn = draw_misclassified_grid(
        tmp_path / "grid.png", images=images, labels=labels, probabilities=probabilities, count=8
    )
    grid = Image.open(tmp_path / "grid.png")
    assert drawn == 8 and grid.size == (6 * CELL, 2 * (CELL + CAPTION))
    caption = np.asarray(grid)[CELL : CELL + CAPTION, :CELL]
    assert caption.min() < 100 and caption.max() == 255  # dark text drawn under the first digit
    none = draw_misclassified_grid(
        tmp_path / "none.png", images=images, labels=np.ones(20, np.int64), probabilities=probabilities, count=8
    )
    assert none == 0 and Image.open(tmp_path / "none.png").size == (
        CELL,
        CELL + CAPTION,
    )  # an empty, still valid picture


def test_the_augmented_grid_has_a_row_per_digit_and_a_column_per_epoch(tmp_path):
    originals = np.random.default_rng(1).random((3, 784), np.float32)
    draw_augmented_grid(
        tmp_path / "augmented.png", originals=originals, augmented=[originals, originals], scale=[0.0, 1.0], title="t"
    )
    assert Image.open(tmp_path / "augmented.png").size == (3 * CELL, CAPTION + 3 * CELL)
