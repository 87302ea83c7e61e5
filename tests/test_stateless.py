"""digits/stateless.py: each example's numbers are a pure function of (seed, stream, epoch, index), whatever batch holds
it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from digits.stateless import AFFINE_STREAM, DROPOUT_STREAM, ELASTIC_STREAM, uniform


def _draw(indices, *, seed=7, stream=AFFINE_STREAM, epoch=3, count=16) -> np.ndarray:
    return uniform(seed=seed, stream=stream, epoch=epoch, indices=tf.constant(indices, tf.int32), count=count).numpy()


def test_an_examples_row_is_the_same_in_any_batch_order_or_split():
    whole = _draw(list(range(100)))
    shuffled = np.random.default_rng(0).permutation(100)
    assert np.array_equal(_draw(shuffled.tolist()), whole[shuffled])
    assert np.array_equal(np.concatenate([_draw(list(range(37))), _draw(list(range(37, 100)))]), whole)
    assert np.array_equal(_draw(list(range(100))), whole)  # and again: no hidden state


def test_seed_stream_and_epoch_each_change_every_row():
    base = _draw(list(range(50)))
    for other in (
        _draw(list(range(50)), seed=8),
        _draw(list(range(50)), stream=ELASTIC_STREAM),
        _draw(list(range(50)), epoch=4),
        _draw(list(range(50)), stream=DROPOUT_STREAM),
    ):
        assert not np.any(np.all(other == base, axis=1))


def test_values_are_uniform_on_the_unit_interval_with_24_bit_steps():
    values = _draw(list(range(2000)), count=64).ravel()
    assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() < 1.0
    assert np.array_equal(values * (1 << 24), np.round(values * (1 << 24)))  # exact multiples of 2**-24
    counts = np.histogram(values, bins=10, range=(0, 1))[0]
    expected = len(values) / 10
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))  # each decile within five standard deviations
    assert abs(float(np.corrcoef(values[:-1], values[1:])[0, 1])) < 0.02  # neighbours unrelated


def test_compiled_draws_equal_eager_ones():
    indices = tf.constant(np.arange(64), tf.int32)
    compiled = tf.function(
        lambda epoch: uniform(seed=1, stream=2, epoch=epoch, indices=indices, count=8), jit_compile=True
    )
    assert np.array_equal(compiled(tf.constant(5)).numpy(), _draw(list(range(64)), seed=1, stream=2, epoch=5, count=8))
