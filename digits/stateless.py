"""Random numbers that are a pure function of (seed, epoch, example index).

Dropout masks and augmentations must not depend on which batch, replica or
process an example lands in, or on whether the run was resumed: then a
resumed run and a mirrored run see exactly the noise the single-device run
saw. TensorFlow's stateless ops take one seed per call, so a batch would get
one draw shared out by position. Here every number comes from an integer
hash of (seed, stream, epoch, example index, element), computed with plain
uint32 ops inside the compiled epoch: vectorised, XLA-friendly and identical
on every device.
"""

from __future__ import annotations

from digits.runtime import tf

# Streams keep the users of one seed apart (an augmentation and a dropout
# mask drawn from equal seeds must still be unrelated).
AFFINE_STREAM = 1
ELASTIC_STREAM = 2
DROPOUT_STREAM = 100  # + layer index


def mix(x: tf.Tensor) -> tf.Tensor:
    """One round of a 32-bit avalanche hash (Wellons' "lowbias32"): each input bit flips about half the output bits."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16)) * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15)) * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def uniform(*, seed: int, stream: int, epoch: tf.Tensor | int, indices: tf.Tensor, count: int) -> tf.Tensor:
    """(N, count) float32 in [0, 1): row i belongs to example ``indices[i]`` in ``epoch``, whatever the batch.

    24 random bits per number, the float32 mantissa, so every value is exact.
    """
    xor = tf.bitwise.bitwise_xor
    key = mix(xor(tf.constant(seed, tf.uint32), mix(tf.constant(stream, tf.uint32))))
    key = mix(key + tf.cast(epoch, tf.uint32))
    rows = mix(xor(key, mix(tf.cast(indices, tf.uint32) + tf.constant(0x9E3779B9, tf.uint32))))
    columns = mix(tf.cast(tf.range(count), tf.uint32) * tf.constant(0x85EBCA6B, tf.uint32) + tf.constant(1, tf.uint32))
    bits = mix(xor(rows[:, None], columns[None, :]))
    return tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) * (1.0 / (1 << 24))
