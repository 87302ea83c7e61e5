"""In-graph data augmentation: a random affine map and Simard's elastic distortion, in one resampling.

Simard, Steinkraus & Platt (2003) took a fully connected net to 99.3 % on
MNIST by training on elastically distorted digits; Cireşan et al. (2010)
added affine distortions. Both move each output pixel's *sampling position*:

    source(p) = A^-1 (p - c - t) + c  +  alpha * blur_sigma(uniform(-1, 1) field)(p)

with A a rotation, scale and shear about the centre c and t a shift. The
affine and elastic parts are added as displacements and the image is
resampled once (bilinear, background outside), so it is blurred once.

Everything is plain tensor arithmetic and one gather, which XLA compiles on
CPU and GPU alike (``ImageProjectiveTransformV3`` does not compile under XLA
on CPU), so it runs inside the compiled epoch. The random numbers are a pure
function of (seed, epoch, example index) (digits.stateless): an example is
distorted the same way whatever batch or replica it lands in. With every
strength at zero the sampling grid is the pixel grid and the images come
back bit for bit.
"""

from __future__ import annotations

import math

from digits.runtime import tf

import numpy as np

from digits.fixed_math import sin_cos
from digits.fixed_math import tan as fixed_tan
from digits.fusion import materialised
from digits.mnist import IMAGE_SIDE
from digits.params import AugmentParams
from digits.stateless import AFFINE_STREAM, ELASTIC_STREAM, uniform

BORDER = 2  # pixels of background around an image being resampled: room for a clamped corner's neighbours


def is_identity(settings: AugmentParams) -> bool:
    """True when every strength is zero: training skips augmentation altogether."""
    return not any((settings.rotation, settings.scale, settings.shift, settings.shear, settings.elastic_alpha))


def augment(
    images: tf.Tensor, *, settings: AugmentParams, epoch: tf.Tensor | int, indices: tf.Tensor, background: float
) -> tf.Tensor:
    """Distorted copies of flattened (N, 784) images, each drawn from (settings.seed, epoch, its index)."""
    count = tf.shape(images)[0]
    draws = 2.0 * uniform(seed=settings.seed, stream=AFFINE_STREAM, epoch=epoch, indices=indices, count=5) - 1.0
    angle, scale, shear, shift_x, shift_y = tf.unstack(draws, axis=1)  # each uniform in [-1, 1)
    x, y = affine_sampling_grid(
        rotation=angle * settings.rotation,
        scale=1.0 + scale * settings.scale,
        shear=shear * settings.shear,
        shift=tf.stack([shift_x, shift_y], axis=1) * settings.shift,
    )
    if settings.elastic_alpha > 0:
        dx, dy = elastic_displacement(
            uniform(
                seed=settings.seed,
                stream=ELASTIC_STREAM,
                epoch=epoch,
                indices=indices,
                count=2 * IMAGE_SIDE * IMAGE_SIDE,
            ),
            alpha=settings.elastic_alpha,
            sigma=settings.elastic_sigma,
        )
        x, y = x + dx, y + dy
    x, y = materialised(x), materialised(y)
    return bilinear_resample(tf.reshape(images, [count, IMAGE_SIDE, IMAGE_SIDE]), x=x, y=y, background=background)


def affine_sampling_grid(
    *, rotation: tf.Tensor, scale: tf.Tensor, shear: tf.Tensor, shift: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """Where each output pixel samples its input, (N, 28, 28) x (column) and y (row), for per-image transforms.

    The digit is turned ``rotation`` degrees counter-clockwise as displayed,
    scaled by ``scale``, sheared by ``shear`` degrees (x += tan(shear) * y),
    all about the image centre, and moved by ``shift`` (N, 2) pixels (x, y).
    Sampling needs the inverse map, A^-1 (p - c - t) + c.
    """
    theta = rotation * (math.pi / 180.0)
    (sin, cos), tan = (
        sin_cos(theta),
        fixed_tan(shear * (math.pi / 180.0)),
    )  # the C library's sinf and tanf differ by CPU
    # Forward map on (x, y) with y pointing down: A = scale * R(theta) @ [[1, tan], [0, 1]],
    # R = [[cos, sin], [-sin, cos]] (counter-clockwise on screen). Its inverse, written out:
    # A^-1 = [[1, -tan], [0, 1]] @ [[cos, -sin], [sin, cos]] / scale.
    # Every sum below adds at most one product, used once: XLA lets LLVM fuse a multiply into the add
    # that uses it (FMA), and with two products to choose from the choice varied with the vector width.
    inverse_xx, inverse_xy = (cos - tan * sin) / scale, -(sin + tan * cos) / scale
    inverse_yx, inverse_yy = sin / scale, cos / scale
    centre = (IMAGE_SIDE - 1) / 2.0
    pixels = tf.range(IMAGE_SIDE, dtype=tf.float32) - centre
    px = pixels[None, None, :] - shift[:, 0, None, None]  # (N, 1, 28)
    py = pixels[None, :, None] - shift[:, 1, None, None]  # (N, 28, 1)
    inverse_xx, inverse_xy, inverse_yx, inverse_yy = (
        value[:, None, None] for value in (inverse_xx, inverse_xy, inverse_yx, inverse_yy)
    )
    x = inverse_xx * px + (inverse_xy * py + centre)
    y = inverse_yx * px + (inverse_yy * py + centre)
    return x, y


def gaussian_matrix(sigma: float, size: int = IMAGE_SIDE) -> np.ndarray:
    """(size, size) matrix M with M @ v the Gaussian blur of v: a normalised kernel, zero outside the image.

    Python's ``math.exp``, not numpy's: numpy picks its SIMD exp by CPU
    (AVX-512 or AVX2) and the two round differently, which would make the
    augmentation, and so every trained weight, depend on the machine.
    """

    def gaussian(offset: int) -> float:
        return math.exp(-0.5 * (offset / sigma) ** 2)

    full_sum = math.fsum(gaussian(offset) for offset in range(-4 * size, 4 * size + 1))
    kernel = [[gaussian(row - column) / full_sum for column in range(size)] for row in range(size)]
    return np.array(kernel, np.float32)


def elastic_displacement(noise: tf.Tensor, *, alpha: float, sigma: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Simard's displacement field: uniform(-1, 1) per pixel and axis, Gaussian-blurred with ``sigma``, times ``alpha``.

    ``noise`` (N, 2*784) is uniform in [0, 1). The blur is separable: the
    symmetric 28x28 Gaussian matrix multiplies every row, then every column,
    each as one plain (rows x 28) @ (28 x 28) matmul, the form that has the
    same bits on every CPU (digits.runtime).
    """
    blur = tf.constant(gaussian_matrix(sigma))  # symmetric: blur == its transpose

    def blur_last_axis(field: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.matmul(tf.reshape(field, [-1, IMAGE_SIDE]), blur), tf.shape(field))

    field = tf.reshape(2.0 * noise - 1.0, [-1, 2, IMAGE_SIDE, IMAGE_SIDE])
    across = tf.transpose(blur_last_axis(field), [0, 1, 3, 2])
    smooth = tf.transpose(blur_last_axis(across), [0, 1, 3, 2])
    return alpha * smooth[:, 0], alpha * smooth[:, 1]


def bilinear_resample(images: tf.Tensor, *, x: tf.Tensor, y: tf.Tensor, background: float) -> tf.Tensor:
    """Sample (N, 28, 28) images at positions (x, y), bilinearly, with ``background`` outside; flattened (N, 784).

    The images get a two-pixel border of background and each position's top
    left neighbour is clamped into it, so samples off the image fade to the
    background. One gather fetches all four neighbours of every position: XLA
    would fuse four separate gathers each with the whole computation of the
    positions, and compute those four times. At integer positions the weights
    are exactly 1, 0, 0, 0 and a pixel comes back unchanged.
    """
    count, padded_side = tf.shape(images)[0], IMAGE_SIDE + 2 * BORDER
    padded = tf.reshape(
        tf.pad(images, [[0, 0], [BORDER, BORDER], [BORDER, BORDER]], constant_values=background),
        [count, padded_side * padded_side],
    )
    x, y = tf.reshape(x, [count, IMAGE_SIDE * IMAGE_SIDE]), tf.reshape(y, [count, IMAGE_SIDE * IMAGE_SIDE])
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = x - x0, y - y0
    # Clamped to [-2, 28], the corner and its right and lower neighbours all lie in the padded image; a corner
    # clamped from further out has only background around it, as it should.
    column = tf.cast(tf.clip_by_value(x0, -BORDER, IMAGE_SIDE), tf.int32) + BORDER
    row = tf.cast(tf.clip_by_value(y0, -BORDER, IMAGE_SIDE), tf.int32) + BORDER
    corner = row * padded_side + column
    neighbour_offsets = tf.stack([0, 1, padded_side, padded_side + 1])
    neighbours = tf.gather(padded, corner[:, :, None] + neighbour_offsets, batch_dims=1)  # (N, 784, 4)
    top_left, top_right, bottom_left, bottom_right = tf.unstack(neighbours, axis=2)
    top = lerp(top_left, top_right, fx)
    bottom = lerp(bottom_left, bottom_right, fx)
    return lerp(top, bottom, fy)


def lerp(start: tf.Tensor, end: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
    """``start + fraction * (end - start)``: one product feeding one add, which every FMA CPU fuses the same way."""
    return start + fraction * (end - start)
