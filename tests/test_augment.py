"""digits/augment.py: identity at zero strength, known moves, per-example determinism, elastic strength, XLA."""

from __future__ import annotations

from digits.runtime import tf

import numpy as np
import pytest

from conftest import default_params
from digits.augment import affine_sampling_grid, augment, bilinear_resample, elastic_displacement, is_identity
from digits.data import load_split
from digits.mnist import IMAGE_SIDE
from digits.params import AugmentParams
from digits.stateless import ELASTIC_STREAM, uniform

OFF = AugmentParams(**default_params()["augment"])
STRONG = OFF.model_copy(
    update=dict(rotation=15.0, scale=0.15, shift=3.0, shear=10.0, elastic_alpha=34.0, elastic_sigma=4.0)
)


@pytest.fixture(scope="module")
def digits(prepared_dir) -> np.ndarray:
    return load_split("train", prepared_dir).images[:64]


def one_pixel(row: int, column: int) -> tf.Tensor:
    image = np.zeros([1, IMAGE_SIDE, IMAGE_SIDE], np.float32)
    image[0, row, column] = 1.0
    return tf.constant(image)


def transform(image: tf.Tensor, **affine) -> np.ndarray:
    settings = dict(rotation=tf.zeros([1]), scale=tf.ones([1]), shear=tf.zeros([1]), shift=tf.zeros([1, 2]))
    x, y = affine_sampling_grid(**{**settings, **affine})
    return bilinear_resample(image, x=x, y=y, background=0.0).numpy().reshape(IMAGE_SIDE, IMAGE_SIDE)


def test_shipped_params_augment_nothing():
    assert is_identity(OFF) and not is_identity(STRONG)


def test_zero_strength_returns_the_images_bit_for_bit(digits):
    indices = tf.range(len(digits))
    for epoch in (1, 7):
        out = augment(tf.constant(digits), settings=OFF, epoch=epoch, indices=indices, background=0.0).numpy()
        assert out.dtype == np.float32 and np.array_equal(out, digits)


@pytest.mark.parametrize("scale", [(0.0, 1.0), (-0.5, 0.5)])
def test_shape_dtype_and_range_are_preserved(digits, scale):
    low, high = scale
    images = digits * (high - low) + low
    out = augment(tf.constant(images), settings=STRONG, epoch=3, indices=tf.range(len(images)), background=low).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert low <= out.min() and out.max() <= high + 1e-6
    assert not np.allclose(out, images)
    # ink is moved, not created: the total stays within a loose band of the original
    assert 0.6 < (out - low).sum() / (images - low).sum() < 1.6


def test_a_one_pixel_shift_moves_a_pixel_one_column_right_and_one_row_down():
    assert np.array_equal(np.argwhere(transform(one_pixel(5, 20), shift=tf.constant([[1.0, 0.0]]))), [[5, 21]])
    assert np.array_equal(np.argwhere(transform(one_pixel(5, 20), shift=tf.constant([[0.0, 1.0]]))), [[6, 20]])


def test_positions_off_the_image_sample_the_background_and_edges_fade_into_it():
    image = tf.ones([1, IMAGE_SIDE, IMAGE_SIDE])
    for far in (-40.0, -28.5, 28.5, 1e6):  # every neighbour of every position outside, however far
        assert np.all(transform(image, shift=tf.constant([[far, 0.0]])) == 0.0), far
    half = transform(image, shift=tf.constant([[0.5, -0.5]]))  # the left column and bottom row half off
    assert half[5, 0] == 0.5 and half[IMAGE_SIDE - 1, 5] == 0.5 and half[IMAGE_SIDE - 1, 0] == 0.25
    assert half[5, 5] == 1.0


def test_rotating_90_degrees_turns_the_image_counter_clockwise_about_its_centre():
    # (row 5, column 20) is up and right of the centre (13.5, 13.5); a quarter
    # turn counter-clockwise takes it up and left: column 13.5 - 8.5, row 13.5 - 6.5.
    out = transform(one_pixel(5, 20), rotation=tf.constant([90.0]))
    assert np.unravel_index(out.argmax(), out.shape) == (7, 5)
    assert out.max() == pytest.approx(1.0, abs=1e-5) and out.sum() == pytest.approx(1.0, abs=1e-5)


def test_scale_two_doubles_distances_from_the_centre():
    out = transform(one_pixel(13, 17), scale=tf.constant([2.0]))  # 3.5 right, 0.5 up of the centre -> 7 right, 1 up
    rows, columns = np.indices(out.shape)
    centre_of_mass = (out * rows).sum() / out.sum(), (out * columns).sum() / out.sum()
    assert centre_of_mass == pytest.approx((12.5, 20.5), abs=1e-5)


def test_the_same_seed_epoch_and_index_give_the_same_picture_in_any_batch(digits):
    images = tf.constant(digits)
    first = augment(
        tf.gather(images, [5, 9, 12]), settings=STRONG, epoch=4, indices=tf.constant([5, 9, 12]), background=0.0
    ).numpy()
    second = augment(
        tf.gather(images, [12, 3]), settings=STRONG, epoch=4, indices=tf.constant([12, 3]), background=0.0
    ).numpy()
    assert np.array_equal(first[2], second[0])
    next_epoch = augment(
        tf.gather(images, [12]), settings=STRONG, epoch=5, indices=tf.constant([12]), background=0.0
    ).numpy()
    other_seed = augment(
        tf.gather(images, [12]),
        settings=STRONG.model_copy(update={"seed": 12}),
        epoch=4,
        indices=tf.constant([12]),
        background=0.0,
    ).numpy()
    assert not np.array_equal(next_epoch[0], second[0]) and not np.array_equal(other_seed[0], second[0])


def test_elastic_displacement_grows_with_alpha_and_shrinks_with_sigma():
    noise = uniform(seed=1, stream=ELASTIC_STREAM, epoch=1, indices=tf.range(32), count=2 * IMAGE_SIDE * IMAGE_SIDE)

    def rms(alpha, sigma):
        dx, dy = elastic_displacement(noise, alpha=alpha, sigma=sigma)
        return float(tf.sqrt(tf.reduce_mean(dx**2 + dy**2)))

    assert 0 < rms(10.0, 4.0) < rms(30.0, 4.0)
    assert rms(30.0, 4.0) == pytest.approx(3 * rms(10.0, 4.0), rel=1e-5)
    assert rms(30.0, 8.0) < rms(30.0, 4.0)  # a wider blur averages more noise away


def test_compiled_augmentation_matches_eager(digits):
    indices = tf.range(len(digits))
    eager = augment(tf.constant(digits), settings=STRONG, epoch=2, indices=indices, background=0.0)
    compiled = tf.function(
        lambda images: augment(images, settings=STRONG, epoch=2, indices=indices, background=0.0), jit_compile=True
    )
    np.testing.assert_allclose(compiled(tf.constant(digits)).numpy(), eager.numpy(), atol=1e-5)
