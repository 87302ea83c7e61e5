"""Keeping XLA from computing one value many times over.

XLA fuses cheap elementwise work into every loop that reads it: a value
read by three loops is computed three times, and inside a gather once per
element gathered. For an integer hash (digits.stateless) or a sampling
position that is most of the loop's work; for a hidden layer's input, which
its weight gradient reads transposed, it meant reading the previous
product's pieces with a stride (digits.trainer, digits.model).
"""

from __future__ import annotations

from digits.runtime import tf


@tf.custom_gradient
def materialised(tensor: tf.Tensor) -> tf.Tensor:
    """``tensor``, bit for bit, computed once and stored: XLA's loops that use it read it instead of recomputing it.

    A division is the one elementwise operation XLA will not copy into
    several consumers (XLA's CPU fusion counts it expensive), so the tensor
    is divided by one: by ``1 + 0 * tensor``, which XLA cannot fold to a
    constant (0 * x is NaN for an infinite x) and which is exactly 1 for
    every finite value. An optimization barrier would not do: XLA's CPU
    compiler drops those before it fuses. Measured: the best recipe's
    augmented epoch went from 7.35 s to 5.04 s (docs/speed.md).

    Its gradient is the incoming gradient itself, which is what the
    division's derivative gives for every finite value, without the two
    divisions and three multiplications of that derivative in every
    backward loop that passes through a stored hidden input.
    """
    return tensor / (1.0 + 0.0 * tensor), lambda upstream: upstream
