"""digits/tta.py: fixed views move the digit as asked, the same on every call; no views is the plain prediction."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from digits.model import Mlp, predict_logits
from digits.params import TtaView
from digits.reductions import softmax
from digits.tta import averaged_probabilities, tta_logits, view_of


def _model(seed: int = 0) -> Mlp:
    model = Mlp([784, 16, 10], activation="relu")
    rng = np.random.default_rng(seed)
    model.set_arrays(
        {name: rng.normal(scale=0.2, size=array.shape).astype(np.float32) for name, array in model.get_arrays().items()}
    )
    return model


def _images(count: int = 30) -> np.ndarray:
    return np.random.default_rng(3).random((count, 784), dtype=np.float32)


def test_no_views_is_exactly_the_plain_prediction_and_the_identity_view_changes_nothing():
    model, images = _model(), _images()
    np.testing.assert_array_equal(tta_logits(model, images, [], background=0.0), predict_logits(model, images))
    np.testing.assert_array_equal(view_of(tf.constant(images), TtaView(), background=0.0).numpy(), images)
    plain = softmax(model(tf.constant(images))).numpy()
    np.testing.assert_array_equal(
        averaged_probabilities(model, tf.constant(images), [TtaView()], background=0.0).numpy(), plain
    )


def test_a_view_moves_turns_and_scales_the_digit_as_its_keys_say():
    image = np.zeros((28, 28), np.float32)
    image[10, 12] = 1.0  # one lit pixel: row 10, column 12
    moved = (
        view_of(tf.constant(image.reshape(1, 784)), TtaView(shift=[1.0, -2.0]), background=0.0).numpy().reshape(28, 28)
    )
    assert np.argwhere(moved == 1.0).tolist() == [[8, 13]] and moved.sum() == 1.0  # one right, two up
    turned = view_of(tf.constant(image.reshape(1, 784)), TtaView(rotation=90.0), background=0.0).numpy().reshape(28, 28)
    # a quarter turn counter-clockwise about the centre (13.5, 13.5): (x, y) = (12, 10) goes to (10, 15)
    assert np.unravel_index(turned.argmax(), turned.shape) == (15, 10) and turned.max() > 0.99
    blank = view_of(tf.constant(np.full((1, 784), -0.5, np.float32)), TtaView(scale=0.8), background=-0.5).numpy()
    np.testing.assert_allclose(
        blank, -0.5
    )  # a shrunk blank image stays blank: the border is filled with the background


def test_the_prediction_is_the_mean_softmax_over_the_image_and_its_views_and_the_same_on_every_call():
    model, images = _model(), _images()
    views = [TtaView(shift=[1.0, 0.0]), TtaView(rotation=-10.0), TtaView(scale=1.1, shift=[0.0, 1.0])]
    first = tta_logits(model, images, views, background=0.0)
    np.testing.assert_array_equal(first, tta_logits(model, images, views, background=0.0))
    each = [tf.nn.softmax(model(tf.constant(images))).numpy()]
    each += [tf.nn.softmax(model(view_of(tf.constant(images), view, background=0.0))).numpy() for view in views]
    np.testing.assert_allclose(np.exp(first), np.mean(each, axis=0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.exp(first), each[0], atol=1e-4)
