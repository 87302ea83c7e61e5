"""digits/reductions.py: sums in a fixed order, equal to TensorFlow's own to rounding, and the same bits at every vector
width.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import ROOT
from digits.reductions import add_bias, fixed_mean, fixed_sum, log_softmax, softmax, softmax_cross_entropy


@pytest.mark.parametrize("shape, axis", [((7,), 0), ((5, 10), -1), ((128, 10), 0), ((3, 1), 1), ((300, 3), 0)])
def test_fixed_sum_is_the_sum_to_rounding_along_any_axis_and_size(shape, axis):
    values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    expected = values.astype(np.float64).sum(axis=axis)
    np.testing.assert_allclose(fixed_sum(tf.constant(values), axis=axis).numpy(), expected, rtol=1e-5, atol=1e-5)
    assert fixed_sum(tf.constant(values), axis=axis, keepdims=True).shape[axis] == 1
    np.testing.assert_allclose(
        fixed_mean(tf.constant(values), axis=axis).numpy(), expected / shape[axis], rtol=1e-5, atol=1e-6
    )


def test_fixed_sum_is_a_pairwise_tree_and_the_same_with_a_size_known_only_at_run_time():
    values = np.float32([1.0, 1e8, 1.0, -1e8])
    # halves added: [1 + 1, 1e8 - 1e8] then 2 + 0; left to right, 1 + 1e8 rounds to 1e8 and the sum is 1
    assert float(fixed_sum(tf.constant(values), axis=0)) == 2.0
    dynamic = tf.function(lambda v: fixed_sum(v, axis=0), input_signature=[tf.TensorSpec([None, 4])])
    batch = np.random.default_rng(1).standard_normal((77, 4)).astype(np.float32)
    np.testing.assert_array_equal(dynamic(batch).numpy(), fixed_sum(tf.constant(batch), axis=0).numpy())


def test_softmax_and_cross_entropy_match_tensorflows_with_the_same_gradient():
    rng = np.random.default_rng(2)
    logits = tf.constant(rng.standard_normal((64, 10)).astype(np.float32) * 5)
    labels = tf.constant(np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)] * 0.9 + 0.01)
    np.testing.assert_allclose(softmax(logits).numpy(), tf.nn.softmax(logits).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(log_softmax(logits).numpy(), tf.nn.log_softmax(logits).numpy(), rtol=1e-5, atol=1e-6)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        ours = softmax_cross_entropy(labels, logits)
        theirs = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        tape.gradient(ours, logits).numpy(), tape.gradient(theirs, logits).numpy(), rtol=1e-5, atol=1e-7
    )


def test_add_bias_gradient_is_the_batch_sum():
    outputs, bias = tf.constant(np.ones((6, 3), np.float32)), tf.constant(np.zeros(3, np.float32))
    upstream = np.arange(18, dtype=np.float32).reshape(6, 3)
    with tf.GradientTape() as tape:
        tape.watch(bias)
        result = add_bias(outputs, bias)
    np.testing.assert_array_equal(
        tape.gradient(result, bias, output_gradients=tf.constant(upstream)).numpy(), upstream.sum(axis=0)
    )


WIDTH_PROBE = """
import hashlib
import numpy as np
from digits.runtime import tf
from digits.reductions import fixed_sum, softmax, softmax_cross_entropy
rng = np.random.default_rng(0)
logits = rng.standard_normal((128, 10)).astype(np.float32) * 4
labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
columns = rng.standard_normal((100, 300)).astype(np.float32)
program = lambda x, z, y: (fixed_sum(fixed_sum(x, axis=0), axis=0), fixed_sum(x, axis=1), softmax(z),
                           fixed_sum(softmax_cross_entropy(y, z), axis=0))
# arguments, not constants: constants would be folded at compile time
outputs = tf.function(program, jit_compile=True)(columns, logits, labels)
print(hashlib.sha256(b"".join(np.asarray(o).tobytes() for o in outputs)).hexdigest()[:16])
"""


def _digest_at_width(bits: int) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "XLA_FLAGS": f"--xla_cpu_prefer_vector_width={bits}",
    }
    result = subprocess.run([sys.executable, "-c", WIDTH_PROBE], env=env, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[-1]


@pytest.mark.slow
def test_the_fixed_order_sums_give_the_same_bits_at_128_256_and_512_bit_vectors():
    """Each width is its own process (XLA reads its flags once); on a CPU without AVX-512, 512 acts as 256."""
    digests = {bits: _digest_at_width(bits) for bits in (128, 256, 512)}
    assert len(set(digests.values())) == 1, digests
