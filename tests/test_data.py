"""digits/data.py: a prepared split is refused, naming the file and the problem, unless it is exactly what prepare
writes.
"""

from __future__ import annotations

import numpy as np
import pytest

from digits.artifacts import save_npz
from digits.data import load_split, scale_pixels
from digits.errors import PipelineError


def _split(directory, images, labels):
    save_npz(directory / "train.npz", {"images": images, "labels": labels})
    return directory


def _one_hot(classes):
    return np.eye(10, dtype=np.float32)[classes]


def test_a_sound_split_loads(tmp_path):
    split = load_split("train", _split(tmp_path, np.zeros((4, 784), np.float32), _one_hot([0, 1, 2, 3])))
    assert len(split) == 4 and split.classes.tolist() == [0, 1, 2, 3] and split.classes.dtype == np.int64


@pytest.mark.parametrize(
    "images, labels, message",
    [
        (np.full((2, 784), np.nan, np.float32), _one_hot([0, 1]), "images contain NaN or Inf"),
        (np.zeros((2, 784), np.float32), np.full((2, 10), 0.1, np.float32), r"labels are not one-hot"),
        (np.zeros((3, 784), np.float32), _one_hot([0, 1]), "3 images but 2 labels"),
        (np.zeros((0, 784), np.float32), np.zeros((0, 10), np.float32), "holds no examples"),
        (
            np.zeros((2, 784), np.uint8),
            _one_hot([0, 1]),
            r"array 'images' is uint8 \(2, 784\), expected float32 \(N, pixels\)",
        ),
        (
            np.zeros((2, 784), np.float32),
            np.array([0, 1]),
            r"array 'labels' is int64 \(2,\), expected float32 \(N, 10\)",
        ),
    ],
)
def test_a_stale_or_edited_split_is_refused(tmp_path, images, labels, message):
    with pytest.raises(PipelineError, match=message):
        load_split("train", _split(tmp_path, images, labels))


def test_pixels_are_scaled_to_the_params_range():
    pixels = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.testing.assert_allclose(scale_pixels(pixels, scale=[-0.5, 0.5]), [[-0.5, 0.5, -0.3, -0.1]], atol=1e-6)
