"""sin, cos, tan and powers from additions and multiplications alone, so that every CPU computes the same bits.

XLA emits its own code for ``exp``, ``log``, ``tanh`` and the logistic
function, the same on every CPU; ``sin``, ``cos``, ``tan`` and ``pow`` it
hands to the C library's ``sinf``, ``cosf``, ``tanf`` and ``powf``, which
differ between machines. Measured: glibc's ``tanf`` of -0x1.40ae38p-4 (a
shear angle that augmentation drew in the second epoch of a small run) is
-0x1.41565cp-4 on x86-64 and -0x1.41565ep-4 on ARM64, and one example's
distortion, and from there every weight, came out different.

The functions here are polynomials in Horner form. XLA lets LLVM fuse a
multiplication into the addition that uses it (FMA), and every CPU this
project runs on has FMA, so each step ``c + z * p`` (one product, used
once) becomes the same single-rounded FMA everywhere. Range reduction uses
Cody and Waite's split of pi/2, whose first part has so few bits that
``k * part`` is exact, fused or not. Accuracy is a few units in the last
place on the angles used here (|x| <= pi), which augmentation and a
learning-rate schedule do not notice; equality across machines is the point.
"""

from __future__ import annotations

import math

from digits.runtime import tf

# pi/2 = HALF_PI_HIGH + HALF_PI_MID + HALF_PI_LOW. The first two have 8 and 12 significant bits, so that
# k * HALF_PI_HIGH and k * HALF_PI_MID are exact for the quadrants k of any angle used here.
HALF_PI_HIGH = 1.5703125
HALF_PI_MID = 0.0004837512969970703
HALF_PI_LOW = math.pi / 2 - HALF_PI_HIGH - HALF_PI_MID
# Taylor coefficients, enough for float32 on |r| <= pi/4 (the first term left out is below 2e-9).
SIN_COEFFICIENTS = (-1 / 6, 1 / 120, -1 / 5040, 1 / 362880)
COS_COEFFICIENTS = (-1 / 2, 1 / 24, -1 / 720, 1 / 40320, -1 / 3628800)


def _horner(z: tf.Tensor, coefficients: tuple[float, ...]) -> tf.Tensor:
    """c0 + z * (c1 + z * (c2 + ...)): one product per addition."""
    result = tf.fill(tf.shape(z), tf.constant(coefficients[-1], z.dtype))
    for coefficient in reversed(coefficients[:-1]):
        result = coefficient + z * result
    return result


def sin_cos(angle: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(sin, cos) of ``angle`` in radians (|angle| below 2^12 quadrants): the same bits on every CPU with FMA."""
    quadrant = tf.round(angle * (2 / math.pi))
    reduced = angle - quadrant * HALF_PI_HIGH  # the products are exact: fused or not, the same result
    reduced = reduced - quadrant * HALF_PI_MID
    reduced = reduced - quadrant * HALF_PI_LOW
    square = reduced * reduced
    sine = reduced + (reduced * square) * _horner(square, SIN_COEFFICIENTS)
    cosine = 1.0 + square * _horner(square, COS_COEFFICIENTS)
    turn = tf.math.floormod(quadrant, 4.0)  # sin(x) = sin(r), cos(r), -sin(r), -cos(r) for turn 0, 1, 2, 3
    sin = tf.where(turn == 0, sine, tf.where(turn == 1, cosine, tf.where(turn == 2, -sine, -cosine)))
    cos = tf.where(turn == 0, cosine, tf.where(turn == 1, -sine, tf.where(turn == 2, -cosine, sine)))
    return sin, cos


def tan(angle: tf.Tensor) -> tf.Tensor:
    """sin / cos, one correctly rounded division."""
    sin, cos = sin_cos(angle)
    return sin / cos


def power(base: float, exponent: tf.Tensor) -> tf.Tensor:
    """``base ** exponent`` for a positive constant ``base``, as exp(exponent * ln(base)): XLA's own exp, not powf."""
    return tf.exp(exponent * tf.constant(math.log(base), exponent.dtype))
