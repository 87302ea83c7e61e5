"""digits/regularizers.py: label smoothing and the max-norm constraint do what their formulas say."""

from __future__ import annotations

from digits.runtime import tf

import numpy as np
import pytest

from digits.regularizers import max_norm, smooth_labels


def test_label_smoothing_moves_one_hot_targets_towards_uniform():
    labels = tf.one_hot([3, 0], 10)
    smoothed = smooth_labels(labels, 0.1).numpy()
    assert smoothed[0, 3] == pytest.approx(0.9 + 0.01) and smoothed[0, 0] == pytest.approx(0.01)
    assert np.allclose(smoothed.sum(axis=1), 1.0)
    assert smooth_labels(labels, 0.0) is labels


def test_max_norm_scales_long_columns_to_the_limit_and_leaves_short_ones_alone():
    weight = np.zeros([4, 3], np.float32)
    weight[:, 0] = [3.0, 4.0, 0.0, 0.0]  # norm 5: scaled to 2
    weight[:, 1] = [0.3, -0.4, 1.0, 0.5]  # norm ~1.2: unchanged
    constrained = max_norm(tf.constant(weight), 2.0).numpy()
    assert np.linalg.norm(constrained[:, 0]) == pytest.approx(2.0)
    assert np.allclose(constrained[:, 0], [1.2, 1.6, 0.0, 0.0])
    assert np.array_equal(constrained[:, 1:], weight[:, 1:])  # bit for bit
