"""Small pure functions that regularise training: label smoothing and the max-norm constraint.

Weight decay lives in digits.optimizers, because whether it is coupled to
the gradient (L2, for SGD and momentum) or decoupled from it (AdamW) is a
property of the update rule.
"""

from __future__ import annotations

from digits.runtime import tf

from digits.reductions import fixed_sum


def smooth_labels(labels: tf.Tensor, amount: float) -> tf.Tensor:
    """One-hot targets moved ``amount`` towards uniform: 1 - amount + amount/K on the class, amount/K elsewhere (as
    Keras).
    """
    if amount == 0:
        return labels
    classes = tf.cast(tf.shape(labels)[-1], labels.dtype)
    return labels * (1.0 - amount) + amount / classes


def max_norm(weight: tf.Tensor, limit: float) -> tf.Tensor:
    """``weight`` (fan_in, units) with each unit's incoming weight vector (a column) scaled down to L2 norm ``limit`` if
    longer.

    Srivastava et al. (2014) pair this with dropout: it lets a high learning
    rate run without weights growing without bound. Columns within the limit
    are returned unchanged, bit for bit.
    """
    norms = tf.sqrt(fixed_sum(tf.square(weight), axis=0, keepdims=True))
    return tf.where(norms > limit, weight * (limit / tf.maximum(norms, limit)), weight)
