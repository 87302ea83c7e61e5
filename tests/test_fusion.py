from __future__ import annotations

from digits.runtime import tf

import numpy as np
from hlo_text import computations, opcode

from digits.fusion import materialised


def test_materialised_gives_back_every_finite_value_bit_for_bit_compiled_and_eager():
    values = np.array([0.0, -0.0, 2.0**-24, 1e-30, 13.5, -7e20, 3.4e38, np.pi], np.float32)
    compiled = tf.function(materialised, jit_compile=True)
    for result in (materialised(tf.constant(values)), compiled(tf.constant(values))):
        assert np.array_equal(result.numpy().view(np.uint32), values.view(np.uint32))


def test_xla_stores_a_materialised_value_once_for_all_its_readers():
    """Three readers of a hash: without materialised XLA computes the hash in each reader's loop."""

    def readers(store: bool) -> tf.types.experimental.PolymorphicFunction:
        def read(seeds: tf.Tensor) -> tuple[tf.Tensor, ...]:
            hashed = tf.cast(tf.bitwise.bitwise_xor(seeds, tf.bitwise.right_shift(seeds, 7)), tf.float32)
            hashed = materialised(hashed) if store else hashed
            return hashed[:, :3] * 2.0, tf.transpose(hashed) + 1.0, tf.reduce_max(hashed, axis=1)

        return tf.function(read, jit_compile=True)

    seeds = tf.constant(np.arange(4 * 8, dtype=np.uint32).reshape(4, 8) * 2654435761)
    for store, loops in ((False, 3), (True, 1)):
        hlo = readers(store).experimental_get_compiler_ir(seeds)(stage="optimized_hlo")
        hashing_loops = [lines for lines in computations(hlo).values() if any(opcode(line) == "xor" for line in lines)]
        assert len(hashing_loops) == loops, (store, hlo)


def test_the_gradient_through_materialised_is_the_incoming_gradient_with_no_arithmetic():
    """The backward pass through a stored hidden input (digits.trainer) passes the gradient on bit for bit, with no
    division left in the loop that computes it (the division's derivative had two, and three multiplications)."""
    values = tf.constant(np.array([0.5, -3.0, 1e-30, 7e20], np.float32))
    incoming = tf.constant(np.array([0.25, -1e-3, 3.0, -0.0], np.float32))

    def gradient(x: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            stored = materialised(x)
        return tape.gradient(stored, x, output_gradients=upstream)

    compiled = tf.function(gradient, jit_compile=True)
    assert np.array_equal(compiled(values, incoming).numpy().view(np.uint32), incoming.numpy().view(np.uint32))
    hlo = compiled.experimental_get_compiler_ir(values, incoming)(stage="optimized_hlo")
    assert not [line for lines in computations(hlo).values() for line in lines if opcode(line) == "divide"], hlo
