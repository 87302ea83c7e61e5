"""Test-time augmentation: the prediction averages the softmax over the image and fixed distortions of it.

A network trained on shifted, rotated and scaled digits is nearly, not
exactly, invariant to them: a digit it gets wrong as written it often gets
right a pixel to the left. Averaging the class probabilities over the
image and a few such views (``tta.views`` in params.yaml) votes those
near-misses away. The views are fixed (no randomness): the same on every
call, every run and every machine.

Each view is the affine map digits.augment draws at random in training,
with fixed values, resampled once with the same bilinear code; the whole
average runs XLA-compiled, as every forward pass does (digits.model), for
the same bits on every CPU. With no views the prediction is the plain one,
not recomputed.
"""

from __future__ import annotations

from collections.abc import Sequence

from digits.runtime import tf

import numpy as np

from digits.augment import affine_sampling_grid, bilinear_resample
from digits.mnist import IMAGE_SIDE
from digits.model import Mlp, compiled_in_chunks, predict_logits
from digits.params import TtaView
from digits.reductions import softmax


def view_of(images: tf.Tensor, view: TtaView, *, background: float) -> tf.Tensor:
    """(N, 784) images as ``view`` sees them: turned ``rotation`` degrees, scaled by ``scale``, moved by ``shift``
    pixels.
    """
    count = tf.shape(images)[0]
    x, y = affine_sampling_grid(
        rotation=tf.fill([count], view.rotation),
        scale=tf.fill([count], view.scale),
        shear=tf.zeros([count]),
        shift=tf.tile(tf.constant([view.shift], tf.float32), [count, 1]),
    )
    return bilinear_resample(tf.reshape(images, [count, IMAGE_SIDE, IMAGE_SIDE]), x=x, y=y, background=background)


def averaged_probabilities(model: Mlp, images: tf.Tensor, views: Sequence[TtaView], *, background: float) -> tf.Tensor:
    """The mean of the softmax over the images as they are and as each view sees them (a graph function: trace it)."""
    total = softmax(model(images))
    for view in views:
        total += softmax(model(view_of(images, view, background=background)))
    return total / (1 + len(views))


def tta_logits(model: Mlp, images: np.ndarray, views: Sequence[TtaView], *, background: float) -> np.ndarray:
    """Log of the view-averaged probabilities (N, 10): logits whose softmax is the average; the plain logits when there
    are no views.

    Compiled by XLA in chunks, like digits.model.predict_logits.
    """
    if not views:
        return predict_logits(model, images)
    return compiled_in_chunks(
        lambda chunk: tf.math.log(averaged_probabilities(model, chunk, views, background=background)),
        images,
        pixels=model.layer_sizes[0],
    )


def tta_probabilities(model: Mlp, images: np.ndarray, views: Sequence[TtaView], *, background: float) -> np.ndarray:
    """The view-averaged class probabilities (N, 10) (the softmax alone when there are no views), compiled by XLA in
    chunks.
    """
    return compiled_in_chunks(
        lambda chunk: averaged_probabilities(model, chunk, views, background=background),
        images,
        pixels=model.layer_sizes[0],
    )
