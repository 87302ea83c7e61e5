"""The network: a list of explicit tf.Variable weight matrices and biases.

No Keras layers: ``Mlp`` holds ``W_i`` (fan_in, fan_out) and ``b_i``
(fan_out,) for each layer and computes ``act(x @ W + b)``, with raw logits
from the last layer. The Variables are created once and only ever updated in
place (``assign_sub`` in digits.optimizers), which is what keeps them watched
by the GradientTape: seed 002's ``w = w - lr * g`` turned them into plain
Tensors and the next gradient came back None. Created under a tf.distribute
strategy's scope they are mirrored on every replica (digits.distribute).

Every matmul goes through ``dense``, whose gradient is written in the
forms YNNPACK takes, and scoring goes through ``predict_logits``, compiled by
XLA like the training epoch: together with digits.runtime's flags that gives
the same bits on every x86-64 CPU (docs/reproducibility.md).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from digits.runtime import tf

import numpy as np

from digits.artifacts import ArraySpec, load_npz, npz_headers, save_npz
from digits.errors import PipelineError
from digits.fusion import materialised
from digits.mnist import IMAGE_PIXELS, NUM_CLASSES
from digits.params import ModelParams
from digits.reductions import add_bias
from digits.variables import replicated_variable

INPUT_SIZE = IMAGE_PIXELS
ACTIVATIONS = {"relu": tf.nn.relu, "sigmoid": tf.nn.sigmoid, "tanh": tf.nn.tanh}
EVAL_BATCH = 8192  # images per compiled forward pass when scoring a whole split


# The longest sum a single matmul may run. ARM's SME kernels (Apple M4-class chips) sum a longer one in
# another order than every other CPU's kernels: measured under qemu-aarch64 -cpu max, products with
# K <= 512 had x86-64's bits and every K from 513 up (784, the first layer's) did not.
MAX_PRODUCT_DEPTH = 512
# The most rows a weight gradient computes in one batch, and the widths it is batched at (weight_gradient).
WEIGHT_GRADIENT_ROWS = 512
BATCHED_GRADIENT_COLUMNS = range(64, 257)


@tf.custom_gradient
def dense(inputs: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """``inputs @ weight``, whose gradient is two more matmuls in forms YNNPACK takes, each alone in its YNNPACK call.

    TensorFlow's own MatMul gradient multiplies by ``transpose_a`` and
    ``transpose_b`` operands; XLA hands a transposed left operand to Eigen,
    whose result depends on the CPU. Here the weight gradient transposes the
    layer's inputs explicitly (digits.runtime keeps XLA from folding that
    transpose back into the dot), so every matmul of a step is one that
    digits.runtime's flags send to YNNPACK, with the same bits everywhere.
    Each is cut along its sum into pieces of at most MAX_PRODUCT_DEPTH
    (``matmul_in_parts``); a tall weight gradient's rows are cut into
    batches (``weight_gradient``).
    """

    def gradient(upstream: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return matmul_in_parts(upstream, weight, transpose_right=True), weight_gradient(inputs, upstream)

    return matmul_in_parts(inputs, weight), gradient


def weight_gradient(inputs: tf.Tensor, upstream: tf.Tensor) -> tf.Tensor:
    """``inputs^T @ upstream``, a layer's weight gradient; a tall one (over WEIGHT_GRADIENT_ROWS rows, 64 to 256
    columns) as equal batches of its rows in one batched matmul.

    YNNPACK shares a product among the threads in tiles of rows, 256 of
    them for the default net's first layer (784 x 256, summed over a batch
    of 100 or 128): tiles of 256, 256, 256 and 16 rows, so on two threads
    one computed 512 rows while the other computed 272. Two batches of 392
    rows make tiles of 256 and 136 in each, 392 rows a thread: in a profile
    that product went from 171 to 134 ms an epoch, and the epoch got 4-6 %
    faster (docs/speed.md). A narrower product measured no faster this way,
    and a wider one is cut into tiles of columns too, so that there are
    tiles enough: batching the 1024-1024 net's weight gradients made its
    epoch 8 % slower.

    Every element sums the same terms in the same order either way: the
    same bits (tests/test_model.py). The batches are the layer's inputs,
    transposed once straight into that layout (the product needs them
    transposed anyway; transposed, then reshaped, XLA copied them in a
    slow loop), and the upstream gradient repeated for each batch. The
    sum over the batch stays one piece of at most MAX_PRODUCT_DEPTH terms,
    or the product is left to ``matmul_in_parts``.
    """
    rows, columns, depth = inputs.shape[-1], upstream.shape[-1], upstream.shape[0]
    batches = math.ceil(rows / WEIGHT_GRADIENT_ROWS)
    batched = (
        batches > 1
        and rows % batches == 0
        and columns in BATCHED_GRADIENT_COLUMNS
        and depth is not None
        and depth <= MAX_PRODUCT_DEPTH
    )
    if not batched:
        return matmul_in_parts(tf.transpose(inputs), upstream)
    transposed_batches = tf.transpose(tf.reshape(inputs, [depth, batches, rows // batches]), [1, 2, 0])
    repeated = tf.broadcast_to(upstream, [batches, depth, columns])
    return tf.reshape(alone(tf.matmul(transposed_batches, repeated)), [rows, columns])


def matmul_in_parts(left: tf.Tensor, right: tf.Tensor, *, transpose_right: bool = False) -> tf.Tensor:
    """``left @ right`` (``right`` transposed if asked: YNNPACK takes that form) as a sum of products over consecutive
    pieces of the shared axis, none longer than MAX_PRODUCT_DEPTH.

    Every piece is a matmul of its own (equal pieces of a plain ``right``
    as the batches of one batched matmul, ``batched_row_pieces``), alone in
    its YNNPACK call, and the pieces are added left to right by XLA: a
    product has the same bits on every CPU, SME included. The pieces are as even as multiples of 8 allow (784 is
    392 + 392, 1024 is 512 + 512); a short axis, or one whose length is
    known only at run time (a distributed batch's piece), is one matmul.

    A transposed ``right`` cut in pieces (the 1024-1024 net's input gradient
    through its 1024 x 1024 weight) is multiplied the other way round,
    ``right_piece @ left_piece^T``, and only the sum is transposed back
    (``transposed_in_halves``): YNNPACK repacks a transposed right operand
    on every call, which made those two products take twice as long as the
    other matmuls of the step. Both ways sum the same terms in the same
    order (tests/test_model.py).
    """
    depth = left.shape[-1]
    if depth is None or depth <= MAX_PRODUCT_DEPTH:
        return alone(tf.matmul(left, right, transpose_b=transpose_right))
    pieces = math.ceil(depth / MAX_PRODUCT_DEPTH)
    size = 8 * math.ceil(depth / pieces / 8)  # the even share, rounded up to a multiple of 8
    starts = range(0, depth, size)
    if transpose_right:
        transposed = [
            alone(tf.matmul(right[:, start : start + size], left[:, start : start + size], transpose_b=True))
            for start in starts
        ]
        return transposed_in_halves(materialised(added_in_order(transposed)))
    if pieces * size == depth:
        return added_in_order(batched_row_pieces(left, right, pieces=pieces))
    return added_in_order(
        [alone(tf.matmul(left[:, start : start + size], right[start : start + size])) for start in starts]
    )


def transposed_in_halves(matrix: tf.Tensor) -> tf.Tensor:
    """``matrix^T``, as the transposes of its two halves of rows joined side by side: a stored result that the
    next loop reads in order.

    XLA fuses a transpose into the loop that reads it. The ReLU gradient
    applied to the 1024-1024 net's input gradient through W1 (a 1024 x 128
    sum, transposed) then read that sum column by column, dividing and
    testing for NaN in the same loop: 166-185 ms an epoch. XLA's CPU compiler
    never fuses a concatenation along a minor axis of 128 or more, neither
    into its reader nor its operands into it (``cpu_instruction_fusion.cc``:
    "Concatenate fusion is inefficient"), so here each half is transposed in
    a loop of its own and the ReLU gradient reads the joined result in
    order: 85-101 ms in all (docs/speed.md). Only values move: the same bits.
    """
    half = matrix.shape[0] // 2
    return tf.concat([tf.transpose(matrix[:half]), tf.transpose(matrix[half:])], axis=1)


def added_in_order(products: list[tf.Tensor]) -> tf.Tensor:
    """The first product plus the second, plus the third, ...: one order, whatever the CPU."""
    total = products[0]
    for product in products[1:]:
        total += product
    return total


def batched_row_pieces(left: tf.Tensor, right: tf.Tensor, *, pieces: int) -> list[tf.Tensor]:
    """The products ``left[:, piece] @ right[piece]`` over ``pieces`` equal pieces of the shared axis, as one batched
    matmul.

    Equal row blocks of a row-major ``right`` are a reshape of it, which XLA
    does not copy, where a slice is copied: cutting a weight into blocks of
    rows for the forward pass cost a copy of all of it every step, 4 MiB for
    the 1024-1024 net's W1 (docs/speed.md). YNNPACK runs each piece of the
    batch as it runs that piece alone: the same bits.
    """
    left_pieces = tf.transpose(tf.reshape(left, [-1, pieces, left.shape[-1] // pieces]), [1, 0, 2])
    products = alone(tf.matmul(left_pieces, tf.reshape(right, [pieces, -1, right.shape[-1]])))
    return tf.unstack(products, num=pieces)


def alone(product: tf.Tensor) -> tf.Tensor:
    """A matmul's ``product``, unchanged, with nothing that uses it fused into the matmul's YNNPACK call.

    XLA fuses the elementwise work that follows a matmul into its YNNPACK
    call. That is slow: with the optimizer's update fused into the weight
    gradient's matmul (its learning rate first broadcast to the weight's
    shape), an epoch of the 1024-1024 net took 4.1 s; with every matmul alone,
    3.5 s (docs/speed.md). And it is wrong: YNNPACK's ``max`` turns NaN into
    0, so a ReLU layer gone NaN would look healthy to the divergence guard
    while the weights filled with NaN, and its ``exp`` and ``tanh`` are its
    own approximations. Asking whether the product is NaN gives it a second
    user, which ends the fusion at the matmul: the bias add, the activation
    and the update run in XLA's own loops, and a NaN stays NaN.
    """
    return tf.where(tf.math.is_nan(product), tf.constant(float("nan")), product)


def activate(name: str, pre_activation: tf.Tensor) -> tf.Tensor:
    """A hidden layer's activation, kept out of the next matmul's YNNPACK call, with NaN passed on as NaN.

    Where nothing else uses the activation (scoring, with no gradient to
    take), XLA would fuse the bias add and the activation into the YNNPACK
    call of the next layer's matmul, whose ``max`` and ``tanh`` are not
    XLA's (see ``alone``). The NaN test gives the activation a user YNNPACK
    does not take, which keeps it, and the bias add before it, in XLA's loop.
    """
    return tf.where(tf.math.is_nan(pre_activation), pre_activation, ACTIVATIONS[name](pre_activation))


class Mlp(tf.Module):
    """A fully connected network over explicit Variables, e.g. 784-256-128-10."""

    def __init__(self, layer_sizes: Sequence[int], *, activation: str, name: str = "mlp") -> None:
        super().__init__(name=name)
        if activation not in ACTIVATIONS:
            raise PipelineError(f"model.activation = {activation!r}: allowed are {', '.join(ACTIVATIONS)}")
        self.layer_sizes = [int(size) for size in layer_sizes]
        self.activation = activation
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        self.weights = [
            replicated_variable(tf.zeros([fan_in, fan_out]), name=f"W{i}") for i, (fan_in, fan_out) in enumerate(pairs)
        ]
        self.biases = [replicated_variable(tf.zeros([fan_out]), name=f"b{i}") for i, (_, fan_out) in enumerate(pairs)]

    @property
    def parameters(self) -> list[tf.Variable]:
        """[W0, b0, W1, b1, ...]: the order gradients and optimizer slots follow."""
        return [variable for pair in zip(self.weights, self.biases) for variable in pair]

    def __call__(
        self, images: tf.Tensor, *, layer_input: Callable[[tf.Tensor, int], tf.Tensor] | None = None
    ) -> tf.Tensor:
        """Logits (N, 10) for scaled, flattened images (N, 784).

        ``layer_input(x, i)``, if given, transforms what enters layer ``i``
        (the pixels for i = 0, a hidden activation after): training passes
        dropout here; evaluation and the exported model pass nothing.
        """
        hidden = images
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            if layer_input is not None:
                hidden = layer_input(hidden, i)
            hidden = add_bias(dense(hidden, weight), bias)
            if i < last:
                hidden = activate(self.activation, hidden)
        return hidden

    def count_parameters(self) -> int:
        return int(sum(np.prod(variable.shape) for variable in self.parameters))

    def get_arrays(self) -> dict[str, np.ndarray]:
        return {variable.name.split(":")[0]: variable.numpy() for variable in self.parameters}

    def set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for variable in self.parameters:
            variable.assign(arrays[variable.name.split(":")[0]])


def predict_logits(model: Mlp, images: np.ndarray) -> np.ndarray:
    """Logits (N, 10) for scaled, flattened images, XLA-compiled in chunks of EVAL_BATCH.

    TensorFlow's own MatMul kernel (what an uncompiled call runs) picks its
    code by the CPU's vector ISA and thread count; compiled, the forward pass
    is the training loop's, with the same bits on every machine.
    """
    return compiled_in_chunks(lambda chunk: model(chunk), images, pixels=model.layer_sizes[0])


def compiled_in_chunks(function: Callable[[tf.Tensor], tf.Tensor], images: np.ndarray, *, pixels: int) -> np.ndarray:
    """``function`` of a (chunk, pixels) float32 batch, XLA-compiled once and run over ``images`` in chunks of
    EVAL_BATCH, concatenated.

    Every score of a whole split goes through here (predict_logits, digits.tta), compiled as the training epoch is.
    """
    compiled = tf.function(function, jit_compile=True, input_signature=[tf.TensorSpec([None, pixels], tf.float32)])
    return np.concatenate(
        [compiled(images[start : start + EVAL_BATCH]).numpy() for start in range(0, len(images), EVAL_BATCH)]
    )


def weights_digest(model: Mlp) -> str:
    """A short hash of every weight's bytes: equal digests mean bit-identical networks (e.g. on every worker)."""
    digest = hashlib.sha256()
    for name, array in model.get_arrays().items():
        digest.update(name.encode() + np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def initial_arrays(layer_sizes: Sequence[int], params: ModelParams) -> list[np.ndarray]:
    """Initial [W0, b0, W1, b1, ...] drawn from ``params.init`` with ``params.init_seed``.

    Stateless random ops make the draw a pure function of the seed and layer
    index: the same weights on every run, independent of anything else that
    consumed randomness before. Biases start at zero, as in all the seeds.
    """
    arrays = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layer_sizes)):
        shape, seed = [fan_in, fan_out], tf.constant([params.init_seed, i], tf.int64)
        if params.init == "truncated_normal":
            weight = tf.random.stateless_truncated_normal(shape, seed=seed, stddev=params.init_stddev)
        elif params.init == "uniform":
            low, high = params.init_range
            weight = tf.random.stateless_uniform(shape, seed=seed, minval=low, maxval=high)
        elif params.init == "he":
            # Keras' he_normal: truncated at 2 stddev, the stddev corrected for the truncation
            stddev = float(np.sqrt(2.0 / fan_in)) / 0.87962566103423978
            weight = tf.random.stateless_truncated_normal(shape, seed=seed, stddev=stddev)
        else:  # glorot (uniform), Keras' default for Dense
            limit = float(np.sqrt(6.0 / (fan_in + fan_out)))
            weight = tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit)
        arrays += [weight.numpy(), np.zeros([fan_out], np.float32)]
    return arrays


def build_model(params: ModelParams, *, input_size: int = INPUT_SIZE, num_classes: int = NUM_CLASSES) -> Mlp:
    """A freshly initialised network for ``params`` (hidden sizes, activation, init)."""
    model = Mlp([input_size, *params.hidden, num_classes], activation=params.activation)
    for variable, value in zip(model.parameters, initial_arrays(model.layer_sizes, params)):
        variable.assign(value)
    return model


def save_weights(model: Mlp, path: Path | str) -> None:
    """The raw weights as npz, with the activation, so the file rebuilds the model alone."""
    save_npz(path, {**model.get_arrays(), "activation": np.array(model.activation)})


def load_weights(path: Path | str) -> Mlp:
    """Rebuild an Mlp from ``save_weights`` output, its headers checked first: float32 layers that chain, and an
    activation.
    """
    headers = npz_headers(path)
    layers = 1 + max((int(name[1:]) for name in headers if re.fullmatch(r"[Wb]\d{1,4}", name)), default=-1)
    sizes = []
    for i in range(layers):
        shape = headers.get(f"W{i}", ((), None))[0]
        if len(shape) != 2:
            raise PipelineError(f"{path}: not a weights file of this project (W{i} is missing or not a matrix)")
        sizes += [shape[0], shape[1]] if i == 0 else [shape[1]]
    if not sizes:
        raise PipelineError(f"{path}: not a weights file of this project (no weight matrix W0)")
    expected = {"activation": ArraySpec("str", ())}
    for i in range(len(sizes) - 1):
        expected |= {
            f"W{i}": ArraySpec("float32", (sizes[i], sizes[i + 1])),
            f"b{i}": ArraySpec("float32", (sizes[i + 1],)),
        }
    arrays = load_npz(path, expected)
    model = Mlp(sizes, activation=str(arrays.pop("activation")))
    model.set_arrays(arrays)
    return model
