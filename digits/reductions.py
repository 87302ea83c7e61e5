"""Sums in one fixed order, whatever the CPU: the reductions behind every output.

XLA compiles a reduction (``tf.reduce_sum``, ``reduce_mean``, the sum
inside ``tf.nn.softmax`` and ``softmax_cross_entropy_with_logits``) into a
loop vectorized by the target's width and marked reassociable: 4 lanes of
partial sums on ARM's NEON, 8 under AVX2, 16 with AVX-512, added up at the
end. Each width rounds differently, so the same program trained other bits
on a Graviton or a Mac than on an x86 machine, and other bits again on x86
at another vector width (docs/reproducibility.md).

``fixed_sum`` writes the sum as a tree of elementwise adds instead: the
axis is padded with zeros to a power of two and halved, ``x[:h] + x[h:]``,
until one slice is left. Every add is between two whole slices, so lanes
only ever hold *different* sums and no width can reorder one; the order is
the same pairwise tree on every machine (and pairwise summation is the more
accurate one). Its gradient is a broadcast built from pads and slices, with
no reduction in it. Everything else here is built on it: the softmax, the
cross-entropy (with the gradient TensorFlow's own op has, softmax - labels,
written out so autodiff adds no reduction of its own), the mean, and the
bias add, whose gradient is a sum over the batch.

``tf.reduce_max`` and integer sums stay as they are: a maximum and an
integer sum are exact in any order.
"""

from __future__ import annotations

from digits.runtime import tf


def fixed_sum(values: tf.Tensor, *, axis: int, keepdims: bool = False) -> tf.Tensor:
    """The sum of ``values`` along ``axis``, as a pairwise tree of adds that no vector width reorders.

    A static size (every compiled program here) unrolls the tree; a size
    known only at run time (the pieces of a distributed batch) runs the same
    tree in a ``tf.while_loop``.
    """
    axis = axis % values.shape.rank
    size = values.shape[axis]
    if size is not None:
        width = 1 << max(size - 1, 0).bit_length()  # the next power of two
        values = _pad_axis(values, axis=axis, to=width)
        while width > 1:
            width //= 2
            values = _add_halves(values, axis=axis)
    else:
        size = tf.shape(values)[axis]
        width = tf.while_loop(lambda width: width < size, lambda width: [width * 2], [tf.constant(1)])[0]
        values = _pad_axis(values, axis=axis, to=width)
        invariant = values.shape.as_list()
        invariant[axis] = None
        values = tf.while_loop(
            lambda folded: tf.shape(folded)[axis] > 1,
            lambda folded: [_add_halves(folded, axis=axis)],
            [values],
            shape_invariants=[tf.TensorShape(invariant)],
        )[0]
    return values if keepdims else tf.squeeze(values, axis=axis)


def _pad_axis(values: tf.Tensor, *, axis: int, to: int | tf.Tensor) -> tf.Tensor:
    """``values`` padded with zeros along ``axis`` to size ``to`` (adding a zero changes no sum)."""
    padding = [[0, 0]] * values.shape.rank
    padding[axis] = [0, to - tf.shape(values)[axis]]
    return tf.pad(values, padding)


def _add_halves(values: tf.Tensor, *, axis: int) -> tf.Tensor:
    first, second = tf.split(values, 2, axis=axis)
    return first + second


def fixed_mean(values: tf.Tensor, *, axis: int, keepdims: bool = False) -> tf.Tensor:
    """``fixed_sum`` divided by the axis' size."""
    return fixed_sum(values, axis=axis, keepdims=keepdims) / values.shape[axis]


def _shifted(logits: tf.Tensor) -> tf.Tensor:
    """``logits`` less their row maximum (exact in any order), so that exp never overflows."""
    return logits - tf.reduce_max(logits, axis=-1, keepdims=True)


def softmax(logits: tf.Tensor) -> tf.Tensor:
    """Class probabilities over the last axis, with the normalising sum in the fixed order."""
    exps = tf.exp(_shifted(logits))
    return exps / fixed_sum(exps, axis=-1, keepdims=True)


def log_softmax(logits: tf.Tensor) -> tf.Tensor:
    """log(softmax(logits)), computed as shifted - log(sum(exp(shifted))) for range, the sum in the fixed order."""
    shifted = _shifted(logits)
    return shifted - tf.math.log(fixed_sum(tf.exp(shifted), axis=-1, keepdims=True))


@tf.custom_gradient
def softmax_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-example cross-entropy (N,) of target distributions ``labels`` under ``logits`` (N, C).

    The value and the gradient with respect to the logits are what
    ``tf.nn.softmax_cross_entropy_with_logits`` gives (upstream times
    softmax - labels; none for the labels, which are data here), with every
    sum over the classes in the fixed order.
    """
    shifted = _shifted(logits)
    exps = tf.exp(shifted)
    sums = fixed_sum(exps, axis=-1, keepdims=True)
    losses = fixed_sum(labels * (tf.math.log(sums) - shifted), axis=-1)

    def gradient(upstream: tf.Tensor) -> tuple[None, tf.Tensor]:
        return None, upstream[:, None] * (exps / sums - labels)

    return losses, gradient


@tf.custom_gradient
def add_bias(outputs: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """``outputs + bias`` over a batch, whose bias gradient (the upstream summed over the batch) is a ``fixed_sum``."""

    def gradient(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return upstream, fixed_sum(upstream, axis=0)

    return outputs + bias, gradient
