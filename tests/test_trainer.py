"""digits/trainer.py: a step lowers the loss, the compiled epoch trains every example once (padding masked), the
divergence guard stops at the bad step, and every matmul runs in YNNPACK."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from hlo_text import computations, opcode

from conftest import RECIPE_AUGMENT, RECIPE_TRAIN, make_trainer
from digits.data import Split, load_split
from digits.model import build_model
from digits.optimizers import make_optimizer
from digits.params import load_params
from digits.trainer import Trainer, per_example_loss
from digits.training import epoch_order


def test_one_training_step_lowers_the_batch_loss(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer, _ = make_trainer(train)
    images, labels = tf.constant(train.images[:100]), tf.constant(train.labels[:100])
    first, _ = trainer.train_step(images, labels)
    second, _ = trainer.train_step(images, labels)
    assert float(second) < float(first)


def _library_computations(computations: dict[str, list[str]]) -> set[str]:
    """The computations that XLA's YNNPACK fusions call."""
    return {
        line.split("calls=")[1].split(",")[0]
        for lines in computations.values()
        for line in lines
        if line.startswith("%ynn_fusion") and "calls=" in line
    }


# What may run inside YNNPACK: its matmul and exactly rounded IEEE arithmetic (the blur's scaling of its noise),
# the same bits everywhere. Not its max (NaN becomes 0) nor its exp, tanh or logistic (its own approximations).
YNNPACK_OPCODES = {"parameter", "dot", "add", "subtract", "multiply", "negate", "broadcast", "constant"}


@pytest.fixture(scope="module")
def recipe_hlo(prepared_dir) -> dict[str, str]:
    """The optimized HLO of one epoch and of validation of a trainer with every regularization and augmentation on."""
    train = load_split("train", prepared_dir)
    trainer, _ = make_trainer(train, **RECIPE_TRAIN, augment_changes=RECIPE_AUGMENT)
    images, labels = trainer.resident_tensors(train)
    epoch = trainer._train_epoch.experimental_get_compiler_ir(images, labels, tf.range(len(train)), tf.constant(1))
    validation = trainer._evaluate.experimental_get_compiler_ir(images, labels)
    return {"epoch": epoch(stage="optimized_hlo"), "validation": validation(stage="optimized_hlo")}


def test_every_matmul_runs_in_ynnpack_or_xlas_gemm_and_nothing_else_runs_in_ynnpack(recipe_hlo):
    """Each dot of the epoch and of validation is inside a YNNPACK fusion, or a plain (rows x k) @ (k x cols) one
    for XLA's own GEMM: the two paths digits.runtime's flags choose, with the same bits on every CPU (any
    other dot goes to Eigen). And each YNNPACK fusion ends at its dot (digits.model.alone): no bias add,
    activation or optimizer update has been fused into YNNPACK after it, where it ran slowly or wrongly."""
    epoch, validation = recipe_hlo["epoch"], recipe_hlo["validation"]
    dots_in_ynnpack, dots_elsewhere, depths = [], [], []
    for hlo in (epoch, validation):
        by_name = computations(hlo)
        library = _library_computations(by_name)
        for name, lines in by_name.items():
            for line in lines:
                kind = opcode(line)
                if name in library:
                    assert kind in YNNPACK_OPCODES, line
                    assert not line.startswith("ROOT") or kind == "dot", line
                if kind == "dot":
                    (dots_in_ynnpack if name in library else dots_elsewhere).append(line)
                    depths.append(_depth(line, lines))
    # each layer's 3 matmuls (the first layer's input gradient is unused; its forward product with k = 784 is one
    # batched matmul of two pieces of 392: digits.model.MAX_PRODUCT_DEPTH), the blur's 2; validation's 3
    assert len(dots_in_ynnpack) + len(dots_elsewhere) == (3 * 3 - 1 + 2) + 3
    for dot in dots_elsewhere:
        assert "lhs_contracting_dims={1}, rhs_contracting_dims={0}" in dot and "batch_dims" not in dot, dot
    assert len(dots_in_ynnpack) == 13, dots_elsewhere  # today all of them: the speed of the same bits
    assert max(depths) == 392  # no sum longer than 512, which SME kernels sum like every other CPU
    assert "custom-call" not in epoch + validation


def test_random_draws_and_sampling_positions_are_computed_once_not_in_every_loop_that_reads_them(recipe_hlo):
    """digits.fusion.materialised at work in the compiled epoch. The gather of each sampling position's four
    neighbours (digits.augment) reads the positions from memory: before, XLA fused their whole computation into
    the gather, the hash of the random draws included, and ran it for every neighbour of every pixel (a quarter of
    the best recipe's epoch, docs/speed.md). And no loop that reads a dropout mask or a position (a slice for a
    product piece, a transpose for a weight gradient, the backward pass) hashes it again: each hashing loop ends
    in the division that stores its result (or is the elastic noise, which only its blurring matmul reads, a
    per-image value, or a scalar key)."""
    by_name = computations(recipe_hlo["epoch"])
    neighbour_gathers = [
        name
        for name, lines in by_name.items()
        if any(opcode(line) == "gather" and "slice_sizes={1,1}" in line for line in lines)
    ]
    assert len(neighbour_gathers) == 1, neighbour_gathers  # the four neighbours in one gather
    gather_loop = by_name[neighbour_gathers[0]]
    hashing = [line for line in gather_loop if opcode(line) in ("xor", "shift-right-logical")]
    affine = [line for line in gather_loop if opcode(line) == "multiply" and " = f32" in line]
    assert not hashing and not affine, hashing + affine

    hashing_roots = {
        opcode(next(line for line in lines if line.startswith("ROOT")))
        for lines in by_name.values()
        if any(opcode(line) == "xor" for line in lines)
    }
    assert "divide" in hashing_roots
    assert hashing_roots <= {"divide", "remainder", "bitcast", "xor"}, hashing_roots


def test_the_epoch_updates_the_weights_in_place_without_copying_them(recipe_hlo):
    """digits.runtime's copy-insertion flag at work: without it XLA copied W1 and W2 (784-64-32-10) at every step,
    because it could not tell that a weight's reads come before its update in place."""
    weight_shapes = {"f32[784,64]", "f32[64,32]", "f32[32,10]"}
    copies = [
        line
        for lines in computations(recipe_hlo["epoch"]).values()
        for line in lines
        if opcode(line) == "copy" and line.split(" = ")[1].split("{")[0] in weight_shapes
    ]
    assert not copies, copies


def _depth(dot: str, computation: list[str]) -> int:
    """The length of the sum a dot instruction runs: its left operand's contracted dimension (the operand's shape is
    on the line that defines it, in the same computation)."""
    left = re.search(r"dot\((%[\w.-]+)", dot).group(1)
    shape = next(line for line in computation if line.startswith(f"{left} = ")).split(" = ", 1)[1]
    sizes = [int(size) for size in re.match(r"f32\[([\d,]*)\]", shape).group(1).split(",")]
    return sizes[int(re.search(r"lhs_contracting_dims=\{(\d)\}", dot).group(1))]


def test_losses():
    labels = tf.constant([[0.0, 1.0]])
    logits = tf.constant([[0.0, 0.0]])
    np.testing.assert_allclose(per_example_loss("cross_entropy", labels, logits).numpy(), [np.log(2)], rtol=1e-6)
    np.testing.assert_allclose(per_example_loss("mse", labels, logits).numpy(), [0.5])


def test_short_final_batch_is_trained_on(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer, _ = make_trainer(train, batch_size=300)  # 2000 = 6 x 300 + 200
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=1))
    assert int(trainer.optimizer.iterations.numpy()) == 7


def _sgdmake_trainer(train, batch_size):
    """A plain-SGD trainer at lr 1 (constant): the weight change of a step is exactly minus its gradient."""
    params = load_params()
    model = build_model(params.model.model_copy(update={"hidden": [64, 32]}))
    settings = params.train.model_copy(
        update={"optimizer": "sgd", "lr": 1.0, "lr_schedule": "constant", "batch_size": batch_size}
    )
    return Trainer(
        model,
        make_optimizer(settings, model.parameters, steps_per_epoch=1),
        loss="cross_entropy",
        batch_size=batch_size,
    )


def test_padded_and_masked_batch_trains_like_the_short_batch(prepared_dir):
    """The compiled epoch pads its short last batch to the static batch size; the mask must make that invisible."""
    train = load_split("train", prepared_dir)
    short, padded = _sgdmake_trainer(train, 100), _sgdmake_trainer(train, 100)
    images, labels = train.images[:37], train.labels[:37]
    padding = 100 - 37
    padded_images = np.concatenate([images, train.images[500 : 500 + padding]])  # real digits: they must not count
    padded_labels = np.concatenate([labels, train.labels[500 : 500 + padding]])
    mask = tf.constant([1.0] * 37 + [0.0] * padding)

    short_loss, short_correct = short.train_step(tf.constant(images), tf.constant(labels))
    padded_loss, padded_correct = padded.train_step(tf.constant(padded_images), tf.constant(padded_labels), mask)

    assert float(padded_loss) == pytest.approx(float(short_loss), rel=1e-6)
    assert int(padded_correct) == int(short_correct)
    for a, b in zip(short.model.parameters, padded.model.parameters):  # lr 1: equal weights <=> equal gradients
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    initial = build_model(load_params().model.model_copy(update={"hidden": [64, 32]}))
    moved = max(
        float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(short.model.parameters, initial.parameters)
    )
    assert moved > 1e-3  # the step did train: equality is not two untouched models


def test_compiled_epoch_matches_an_eager_loop_over_unpadded_batches(prepared_dir):
    """2000 images in batches of 300: six full batches and a short one of 200, as a Python loop would cut them."""
    train = load_split("train", prepared_dir)
    compiled, eager = _sgdmake_trainer(train, 300), _sgdmake_trainer(train, 300)
    for variable in [*compiled.model.parameters, *eager.model.parameters]:
        variable.assign(variable * 0.5)  # lr 1 on the default init would be too hot for 7 steps
    order = epoch_order(len(train), seed=3, epoch=1)
    result = compiled.train_epoch(train, order)
    losses, correct = [], 0
    for start in range(0, len(order), 300):
        batch = order[start : start + 300]
        loss, batch_correct = eager.train_step(tf.constant(train.images[batch]), tf.constant(train.labels[batch]))
        losses.append(float(loss) * len(batch))
        correct += int(batch_correct)
    assert result.diverged_step == -1
    assert result.loss == pytest.approx(sum(losses) / len(order), rel=1e-5)
    assert result.accuracy == pytest.approx(correct / len(order), abs=1e-6)
    assert int(compiled.optimizer.iterations.numpy()) == int(eager.optimizer.iterations.numpy()) == 7
    max_difference = max(
        float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(compiled.model.parameters, eager.model.parameters)
    )
    assert max_difference < 1e-5


@pytest.mark.parametrize("bad_step", [0, 3, 6])  # 6: the short, padded last batch
def test_divergence_guard_stops_at_the_step_whose_batch_went_bad(prepared_dir, bad_step):
    train = load_split("train", prepared_dir)
    trainer = _sgdmake_trainer(train, 300)
    order = epoch_order(len(train), seed=3, epoch=1)
    images = train.images.copy()
    images[order[bad_step * 300 + 5], 100] = np.inf  # one pixel of one image of that batch
    result = trainer.train_epoch(Split(images=images, labels=train.labels), order)
    assert result.diverged_step == bad_step and not np.isfinite(result.diverged_loss)
    assert int(trainer.optimizer.iterations.numpy()) == bad_step + 1  # stopped there: no step after it ran


def test_compiled_epoch_traces_once_permake_trainer(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer = _sgdmake_trainer(train, 128)
    half = Split(images=train.images[:1000], labels=train.labels[:1000])
    for epoch, split in enumerate([train, train, half, train], start=1):
        trainer.train_epoch(split, epoch_order(len(split), seed=0, epoch=epoch))
    assert trainer._train_epoch.experimental_get_tracing_count() == 1


# Two in the quick loop, the rest (seconds of compiling each) with the slow tests.
@pytest.mark.parametrize(
    "model_changes",
    [
        {"activation": "sigmoid"},
        {"hidden": []},
        pytest.param({"activation": "tanh"}, marks=pytest.mark.slow),
        pytest.param({"init": "uniform", "init_range": [0.0, 0.1]}, marks=pytest.mark.slow),
        pytest.param({"init": "glorot"}, marks=pytest.mark.slow),
        pytest.param({"hidden": [512]}, marks=pytest.mark.slow),
    ],
)
def test_each_model_option_trains_and_lowers_the_loss(prepared_dir, model_changes):
    train = load_split("train", prepared_dir)
    params = load_params()
    model = build_model(params.model.model_copy(update=model_changes))
    settings = params.train.model_copy(update={"lr_schedule": "constant", "lr": 0.1})
    trainer = Trainer(
        model, make_optimizer(settings, model.parameters, steps_per_epoch=20), loss="cross_entropy", batch_size=100
    )
    before, _ = trainer.evaluate(train)
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=1))
    after, _ = trainer.evaluate(train)
    assert after < before, (before, after)
