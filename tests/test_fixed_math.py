"""digits/fixed_math.py: sin, cos, tan and powers within a few float32 units of the true values, from + and * alone."""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from digits.fixed_math import power, sin_cos, tan


def test_sin_and_cos_are_accurate_over_a_whole_turn_each_way_and_exact_at_zero():
    angles = np.linspace(-2 * math.pi, 2 * math.pi, 100_001).astype(np.float32)
    sin, cos = (value.numpy() for value in tf.function(sin_cos, jit_compile=True)(angles))
    exact = angles.astype(np.float64)
    assert np.abs(sin - np.sin(exact)).max() < 2e-7 and np.abs(cos - np.cos(exact)).max() < 2e-7
    zero_sin, zero_cos = sin_cos(tf.constant([0.0]))
    assert float(zero_sin[0]) == 0.0 and float(zero_cos[0]) == 1.0  # the identity transform stays the identity


def test_tan_and_power():
    angles = np.linspace(-1.4, 1.4, 10_001).astype(np.float32)
    exact = np.tan(angles.astype(np.float64))
    assert (np.abs(tan(tf.constant(angles)).numpy() - exact) / np.abs(exact).clip(1e-3)).max() < 1e-6
    exponents = np.float32([0.0, 1.0, 7.5, 1000.0])
    np.testing.assert_allclose(
        power(0.999, tf.constant(exponents)).numpy(), 0.999 ** exponents.astype(np.float64), rtol=2e-6
    )
