"""Inverted dropout (Srivastava et al. 2014) with masks that follow the example, not the batch.

Each unit of each example is kept with probability ``1 - rate`` and scaled
by ``1 / (1 - rate)`` while training, so evaluation and the exported model
use the weights as they are, with no dropout and no rescaling. The mask of
an example is a pure function of (seed, epoch, its index in the training
set, layer) (digits.stateless): a rerun, a resumed run and a mirrored run
drop the same units of the same examples.
"""

from __future__ import annotations

from digits.runtime import tf

from digits.fusion import materialised
from digits.stateless import DROPOUT_STREAM, uniform


def dropout(
    inputs: tf.Tensor, *, rate: float, seed: int, epoch: tf.Tensor | int, indices: tf.Tensor, layer: int
) -> tf.Tensor:
    """``inputs`` (N, units) with each unit zeroed with probability ``rate`` and the rest scaled up; rate 0 is the
    identity.
    """
    if rate == 0:
        return inputs
    draws = uniform(seed=seed, stream=DROPOUT_STREAM + layer, epoch=epoch, indices=indices, count=int(inputs.shape[-1]))
    # Stored once: the next layer's two product pieces, its weight gradient and the backward pass all read the mask.
    draws = materialised(draws)
    return tf.where(draws >= rate, inputs * (1.0 / (1.0 - rate)), 0.0)
