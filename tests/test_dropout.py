"""digits/dropout.py: masks reproducible by seed and example, the keep fraction, identity at rate 0."""

from __future__ import annotations

from digits.runtime import tf

import numpy as np
import pytest

from digits.dropout import dropout

ONES = tf.ones([4000, 256])


def draw(inputs=ONES, *, rate=0.25, seed=3, epoch=1, indices=None, layer=1) -> np.ndarray:
    indices = tf.range(inputs.shape[0]) if indices is None else indices
    return dropout(inputs, rate=rate, seed=seed, epoch=epoch, indices=indices, layer=layer).numpy()


@pytest.mark.parametrize("rate", [0.1, 0.25, 0.5])
def test_keeps_the_expected_fraction_and_scales_the_kept_units(rate):
    out = draw(rate=rate)
    kept = out != 0
    assert kept.mean() == pytest.approx(1 - rate, abs=0.005)
    assert np.allclose(out[kept], 1 / (1 - rate))
    assert out.mean() == pytest.approx(1.0, abs=0.01)  # inverted dropout keeps the expectation


def test_rate_zero_is_the_identity():
    inputs = tf.random.stateless_normal([8, 16], seed=[1, 2])
    assert draw(inputs, rate=0.0) is not None and np.array_equal(draw(inputs, rate=0.0), inputs.numpy())


def test_masks_are_a_function_of_seed_epoch_example_and_layer():
    reference = draw()
    assert np.array_equal(draw(), reference)
    for changed in (draw(seed=4), draw(epoch=2), draw(layer=2)):
        assert (changed != reference).mean() > 0.3


def test_an_example_gets_its_mask_whatever_batch_it_is_in():
    whole = draw(ONES[:100], indices=tf.range(100))
    pieces = draw(ONES[:3], indices=tf.constant([42, 7, 99]))
    assert np.array_equal(pieces, whole[[42, 7, 99]])


def test_units_are_dropped_independently():
    masks = draw() != 0
    # neighbouring units and neighbouring examples are uncorrelated
    assert abs(np.corrcoef(masks[:, 0], masks[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(masks[:-1, 0], masks[1:, 0])[0, 1]) < 0.05
