"""digits/model.py: shapes, parameter count, init, and the weights file."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from hlo_text import computations, opcode, product_pieces

from digits.errors import PipelineError
from digits.model import Mlp, build_model, load_weights, matmul_in_parts, save_weights, weight_gradient
from digits.params import load_params


def _model_params(**changes):
    return load_params().model.model_copy(update=changes)


def test_default_network_is_784_256_128_10_with_235146_parameters():
    model = build_model(_model_params())
    assert list(model.layer_sizes) == [784, 256, 128, 10]
    assert model.count_parameters() == 235146
    assert [tuple(v.shape) for v in model.parameters] == [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,)]
    assert all(isinstance(v, tf.Variable) for v in model.parameters)
    assert model(tf.zeros([3, 784])).shape == (3, 10)


@pytest.mark.parametrize("hidden, count", [([], 7850), ([512], 407050)])
def test_softmax_regression_and_seed_001_sizes(hidden, count):
    assert build_model(_model_params(hidden=hidden)).count_parameters() == count


def test_truncated_normal_init_is_seeded_bounded_and_zero_bias():
    first = build_model(_model_params(init_stddev=0.1))
    again = build_model(_model_params(init_stddev=0.1))
    other = build_model(_model_params(init_stddev=0.1, init_seed=2))
    w0 = first.weights[0].numpy()
    assert np.array_equal(w0, again.weights[0].numpy()) and not np.array_equal(w0, other.weights[0].numpy())
    assert np.abs(w0).max() <= 0.2 + 1e-6 and 0.07 < w0.std() < 0.1
    assert all(not b.numpy().any() for b in first.biases)


def test_uniform_and_glorot_init_ranges():
    uniform = build_model(_model_params(init="uniform", init_range=[0.0, 0.1])).weights[0].numpy()
    assert uniform.min() >= 0 and uniform.max() <= 0.1
    glorot = build_model(_model_params(init="glorot")).weights[0].numpy()
    assert np.abs(glorot).max() <= np.sqrt(6 / (784 + 256))


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_weights_file_round_trips_with_its_activation(tmp_path, activation):
    model = build_model(_model_params(activation=activation, hidden=[16]))
    save_weights(model, tmp_path / "w.npz")
    loaded = load_weights(tmp_path / "w.npz")
    assert loaded.activation == activation
    x = tf.random.stateless_uniform([4, 784], seed=[0, 0])
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


def test_weights_file_with_mismatched_layers_is_refused(tmp_path):
    from digits.artifacts import save_npz

    save_npz(
        tmp_path / "w.npz",
        {
            "W0": np.zeros((784, 8), np.float32),
            "b0": np.zeros(8, np.float32),
            "W1": np.zeros((9, 10), np.float32),
            "b1": np.zeros(10, np.float32),
            "activation": np.array("relu"),
        },
    )
    with pytest.raises(PipelineError, match=r"array 'W1' is float32 \(9, 10\), expected float32 \(8, 10\)"):
        load_weights(tmp_path / "w.npz")


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda arrays: arrays.pop("activation"), "missing array 'activation'"),
        (lambda arrays: arrays.pop("W1"), r"W1 is missing or not a matrix"),
        (
            lambda arrays: arrays.update(b0=np.zeros(9, np.float32)),
            r"array 'b0' is float32 \(9,\), expected float32 \(16,\)",
        ),
        (
            lambda arrays: arrays.update(W0=arrays["W0"].astype(np.float64)),
            r"array 'W0' is float64 \(784, 16\), expected float32 \(784, 16\)",
        ),
        (lambda arrays: arrays.update(activation=np.array(3)), r"array 'activation' is int64 \(\), expected str \(\)"),
        (lambda arrays: arrays.update(extra=np.zeros(1)), "unexpected array 'extra'"),
    ],
)
def test_a_damaged_weights_file_is_refused_naming_what_is_wrong(tmp_path, damage, expected):
    from digits.artifacts import save_npz

    arrays = build_model(_model_params(hidden=[16])).get_arrays() | {"activation": np.array("relu")}
    damage(arrays)
    save_npz(tmp_path / "w.npz", arrays)
    with pytest.raises(PipelineError, match=expected):
        load_weights(tmp_path / "w.npz")


def test_unknown_activation_is_refused():
    with pytest.raises(PipelineError, match=r"model\.activation = 'gelu'"):
        Mlp([784, 10], activation="gelu")


def test_he_init_has_the_keras_he_normal_spread():
    model = build_model(_model_params(init="he", hidden=[1024]))
    for weight in model.weights:
        fan_in = weight.shape[0]
        std = float(np.std(weight.numpy()))
        assert std == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.05)
        assert (
            np.abs(weight.numpy()).max() <= 2 * np.sqrt(2.0 / fan_in) / 0.8796 + 1e-6
        )  # truncated at two (raw) stddevs


def test_layer_input_transforms_what_enters_each_layer():
    model = build_model(_model_params(hidden=[16, 8]))
    images = tf.random.stateless_uniform([5, 784], seed=[1, 1])
    seen = []
    logits = model(images, layer_input=lambda inputs, layer: seen.append((layer, inputs.shape[1])) or inputs)
    assert seen == [(0, 784), (1, 16), (2, 8)]
    assert np.array_equal(logits.numpy(), model(images).numpy())
    zeroed = model(images, layer_input=lambda inputs, layer: inputs * 0.0 if layer == 0 else inputs)
    assert np.array_equal(zeroed.numpy(), model(tf.zeros_like(images)).numpy())


@pytest.mark.parametrize(
    "depth, pieces", [(10, [10]), (512, [512]), (784, [392] * 2), (1024, [512] * 2), (1500, [504] * 2 + [492])]
)
def test_every_matmul_sums_at_most_512_terms_in_one_piece_and_the_pieces_add_up_to_the_product(depth, pieces):
    """SME kernels sum more than 512 terms in another order (digits.model.MAX_PRODUCT_DEPTH)."""
    rng = np.random.default_rng(depth)
    left, right = rng.standard_normal((4, depth)).astype(np.float32), rng.standard_normal((depth, 6)).astype(np.float32)
    compiled = tf.function(lambda a, b: matmul_in_parts(a, b), jit_compile=True)
    assert product_pieces(compiled.experimental_get_compiler_ir(left, right)(stage="hlo")) == pieces
    np.testing.assert_allclose(compiled(left, right).numpy(), left.astype(np.float64) @ right, rtol=1e-4, atol=1e-4)
    # The transposed form always slices; the plain one runs equal pieces as one batched matmul: the same bits.
    transposed = tf.function(lambda a, b: matmul_in_parts(a, b, transpose_right=True), jit_compile=True)
    right_transposed = np.ascontiguousarray(right.T)
    assert product_pieces(transposed.experimental_get_compiler_ir(left, right_transposed)(stage="hlo")) == pieces
    np.testing.assert_array_equal(transposed(left, right_transposed).numpy(), compiled(left, right).numpy())


@pytest.mark.parametrize("depth", [784, 1024])
def test_equal_pieces_read_the_weight_in_place(depth):
    """Equal row blocks of the right operand are a reshape of it; XLA copies a slice (docs/speed.md)."""
    left, right = np.ones((4, depth), np.float32), np.ones((depth, 6), np.float32)
    compiled = tf.function(lambda a, b: matmul_in_parts(a, b), jit_compile=True)
    optimized = compiled.experimental_get_compiler_ir(left, right)(stage="optimized_hlo")
    weight = re.search(rf"(%\S+) = f32\[{depth},6\]\S* parameter\(1\)", optimized)[1]
    readers = [
        opcode(line)
        for lines in computations(optimized).values()
        for line in lines
        if re.search(rf"{weight}[,)]", line)
    ]
    assert readers == ["bitcast"], readers


def test_a_transposed_right_operand_in_pieces_is_multiplied_the_other_way_round_with_the_same_bits():
    """The 1024-1024 net's input gradient through W1: right_piece @ left_piece^T, transposed, against the plain form."""
    rng = np.random.default_rng(7)
    upstream = rng.standard_normal((128, 1024)).astype(np.float32)
    weight = (rng.standard_normal((1024, 1024)) * 0.05).astype(np.float32)

    def plain(left, right):
        pieces = [
            tf.matmul(left[:, start : start + 512], right[:, start : start + 512], transpose_b=True)
            for start in (0, 512)
        ]
        return pieces[0] + pieces[1]

    swapped = tf.function(lambda a, b: matmul_in_parts(a, b, transpose_right=True), jit_compile=True)
    hlo = swapped.experimental_get_compiler_ir(upstream, weight)(stage="hlo")
    assert re.findall(r" dot\(f32\[(\d+),", hlo) == ["1024", "1024"]  # the weight's pieces are the left operands
    expected = tf.function(plain, jit_compile=True)(upstream, weight).numpy()
    np.testing.assert_array_equal(swapped(upstream, weight).numpy(), expected)


def test_the_loop_reading_a_transposed_sum_of_pieces_reads_it_in_order():
    """The ReLU gradient applied to the input gradient through W1 read the transposed sum column by column,
    166-185 ms an epoch (digits.model.transposed_in_halves): no loop may both transpose it and use it."""
    rng = np.random.default_rng(11)
    upstream = rng.standard_normal((128, 1024)).astype(np.float32)
    weight = (rng.standard_normal((1024, 1024)) * 0.05).astype(np.float32)
    pre_activation = rng.standard_normal((128, 1024)).astype(np.float32)

    def relu_gradient(upstream, weight, pre_activation):
        return tf.where(pre_activation > 0, matmul_in_parts(upstream, weight, transpose_right=True), 0.0)

    compiled = tf.function(relu_gradient, jit_compile=True)
    optimized = compiled.experimental_get_compiler_ir(upstream, weight, pre_activation)(stage="optimized_hlo")
    loops = [{opcode(line) for line in lines} for lines in computations(optimized).values()]
    assert any("select" in loop for loop in loops)
    assert not [loop for loop in loops if {"select", "transpose"} <= loop]
    expected = np.where(pre_activation > 0, upstream.astype(np.float64) @ weight.T, 0.0)
    np.testing.assert_allclose(compiled(upstream, weight, pre_activation).numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "rows, columns, batches",
    [(784, 256, 2), (784, 64, 2), (1500, 128, 3), (512, 256, 1), (784, 32, 1), (784, 1024, 1), (785, 256, 1)],
)
def test_a_tall_weight_gradient_runs_as_batches_of_its_rows_with_the_same_bits(rows, columns, batches):
    """784 rows in YNNPACK's tiles of 256 left one of two threads 512 rows, the other 272 (digits.model)."""
    rng = np.random.default_rng(rows + columns)
    inputs = rng.standard_normal((100, rows)).astype(np.float32)
    upstream = rng.standard_normal((100, columns)).astype(np.float32)
    batched = tf.function(weight_gradient, jit_compile=True)
    assert product_pieces(batched.experimental_get_compiler_ir(inputs, upstream)(stage="hlo")) == [100] * batches
    one_product = tf.function(lambda a, b: matmul_in_parts(tf.transpose(a), b), jit_compile=True)
    result = batched(inputs, upstream).numpy()
    np.testing.assert_array_equal(result, one_product(inputs, upstream).numpy())
    np.testing.assert_allclose(result, inputs.T.astype(np.float64) @ upstream, rtol=1e-4, atol=1e-4)
