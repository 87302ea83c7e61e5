"""digits/training.py: a step lowers the loss, runs are bit-reproducible, the guard fires, resume is exact,
and mirrored training on two CPU devices follows single-device training."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf

from digits.data import Split, load_split, steps_per_epoch
from digits.model import build_model, weights_digest
from digits.optimizers import make_optimizer
from digits.params import load_params
from digits.training import (Checkpointing, DistributedTrainer, EpochResult, Regularization, Trainer, TrainingDiverged, build_trainer, epoch_order, fit,
                             per_example_loss, replica_pieces)

# Everything on: what the best recipe does to each batch, at strengths a unit test can see
RECIPE_TRAIN = {"dropout_input": 0.1, "dropout_hidden": 0.25, "label_smoothing": 0.1, "max_norm": 2.0, "weight_decay": 1e-4, "nesterov": True}
RECIPE_AUGMENT = {"rotation": 12.0, "scale": 0.1, "shift": 2.0, "shear": 5.0, "elastic_alpha": 30.0, "elastic_sigma": 5.0}


def _trainer(train, strategy=None, *, augment_changes=None, **train_changes):
    """Single-device Trainer, or a DistributedTrainer when given a strategy; same params, same initial weights."""
    params = load_params()
    settings = params.train.model_copy(update={"epochs": 3, **train_changes})
    regularization = Regularization.from_params(settings, params.augment.model_copy(update=augment_changes or {}), background=0.0)
    trainer = build_trainer(params.model.model_copy(update={"hidden": [64, 32]}), settings,
                            input_size=train.images.shape[1], train_size=len(train), strategy=strategy, regularization=regularization)
    return trainer, settings


@pytest.fixture(scope="module")
def two_cpus():
    """MirroredStrategy over the two logical CPU devices conftest sets up."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def test_one_training_step_lowers_the_batch_loss(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer, _ = _trainer(train)
    images, labels = tf.constant(train.images[:100]), tf.constant(train.labels[:100])
    first, _ = trainer.train_step(images, labels)
    second, _ = trainer.train_step(images, labels)
    assert float(second) < float(first)


def _computations(hlo: str) -> dict[str, list[str]]:
    """Each computation of an optimized HLO module (name -> its instruction lines)."""
    computations, name = {}, ""
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            name = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
            computations[name] = []
        elif line.startswith("  ") and " = " in line:
            computations[name].append(line.strip())
    return computations


def _opcode(instruction: str) -> str:
    """'dot' for '%x = f32[2,3]{1,0} dot(%a, %b), ...'."""
    return re.search(r" ([a-z][a-z0-9-]*)\(", instruction.split(" = ", 1)[1]).group(1)


def _library_computations(computations: dict[str, list[str]]) -> set[str]:
    """The computations that XLA's YNNPACK fusions call."""
    return {line.split("calls=")[1].split(",")[0] for lines in computations.values() for line in lines
            if line.startswith("%ynn_fusion") and "calls=" in line}


# What may run inside YNNPACK: its matmul and exactly rounded IEEE arithmetic (the blur's scaling of its noise),
# the same bits everywhere. Not its max (NaN becomes 0) nor its exp, tanh or logistic (its own approximations).
YNNPACK_OPCODES = {"parameter", "dot", "add", "subtract", "multiply", "negate", "broadcast", "constant"}


def test_every_matmul_runs_in_ynnpack_or_xlas_gemm_and_nothing_else_runs_in_ynnpack(prepared_dir):
    """Each dot of the epoch and of validation is inside a YNNPACK fusion, or a plain (rows x k) @ (k x cols) one
    for XLA's own GEMM: the two paths digits.runtime's flags choose, with the same bits on every CPU (any
    other dot goes to Eigen). And each YNNPACK fusion ends at its dot (digits.model.alone): no bias add,
    activation or optimizer update has been fused into YNNPACK after it, where it ran slowly or wrongly."""
    train = load_split("train", prepared_dir)
    trainer, _ = _trainer(train, **RECIPE_TRAIN, augment_changes=RECIPE_AUGMENT)
    images, labels = trainer.resident_tensors(train)
    epoch = trainer._train_epoch.experimental_get_compiler_ir(images, labels, tf.range(len(train)), tf.constant(1))(stage="optimized_hlo")
    validation = trainer._evaluate.experimental_get_compiler_ir(images, labels)(stage="optimized_hlo")
    dots_in_ynnpack, dots_elsewhere, depths = [], [], []
    for hlo in (epoch, validation):
        computations = _computations(hlo)
        library = _library_computations(computations)
        for name, lines in computations.items():
            for line in lines:
                opcode = _opcode(line)
                if name in library:
                    assert opcode in YNNPACK_OPCODES, line
                    assert not line.startswith("ROOT") or opcode == "dot", line
                if opcode == "dot":
                    (dots_in_ynnpack if name in library else dots_elsewhere).append(line)
                    depths.append(_depth(line, lines))
    # each layer's 3 matmuls (the first layer's input gradient is unused, its forward product with k = 784 is two pieces
    # of 392: digits.model.MAX_PRODUCT_DEPTH), the blur's 2; validation's 3, its first also in two pieces
    assert len(dots_in_ynnpack) + len(dots_elsewhere) == (3 * 3 - 1 + 1 + 2) + (3 + 1)
    for dot in dots_elsewhere:
        assert "lhs_contracting_dims={1}, rhs_contracting_dims={0}" in dot and "batch_dims" not in dot, dot
    assert len(dots_in_ynnpack) == 15, dots_elsewhere  # today all of them: the speed of the same bits
    assert max(depths) == 392  # no sum longer than 512, which SME kernels sum like every other CPU
    assert "custom-call" not in epoch + validation


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


def test_epoch_order_is_a_seeded_permutation():
    order = epoch_order(1000, seed=7, epoch=2)
    assert sorted(order.tolist()) == list(range(1000))
    assert np.array_equal(order, epoch_order(1000, seed=7, epoch=2))
    assert not np.array_equal(order, epoch_order(1000, seed=7, epoch=3))


def test_short_final_batch_is_trained_on(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer, _ = _trainer(train, batch_size=300)  # 2000 = 6 x 300 + 200
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=1))
    assert int(trainer.optimizer.iterations.numpy()) == 7


def _sgd_trainer(train, batch_size):
    """A plain-SGD trainer at lr 1 (constant): the weight change of a step is exactly minus its gradient."""
    params = load_params()
    model = build_model(params.model.model_copy(update={"hidden": [64, 32]}))
    settings = params.train.model_copy(update={"optimizer": "sgd", "lr": 1.0, "lr_schedule": "constant", "batch_size": batch_size})
    return Trainer(model, make_optimizer(settings, model.parameters, steps_per_epoch=1), loss="cross_entropy", batch_size=batch_size)


def test_padded_and_masked_batch_trains_like_the_short_batch(prepared_dir):
    """The compiled epoch pads its short last batch to the static batch size; the mask must make that invisible."""
    train = load_split("train", prepared_dir)
    short, padded = _sgd_trainer(train, 100), _sgd_trainer(train, 100)
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
    moved = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(short.model.parameters, initial.parameters))
    assert moved > 1e-3  # the step did train: equality is not two untouched models


def test_compiled_epoch_matches_an_eager_loop_over_unpadded_batches(prepared_dir):
    """2000 images in batches of 300: six full batches and a short one of 200, as a Python loop would cut them."""
    train = load_split("train", prepared_dir)
    compiled, eager = _sgd_trainer(train, 300), _sgd_trainer(train, 300)
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
    max_difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(compiled.model.parameters, eager.model.parameters))
    assert max_difference < 1e-5


@pytest.mark.parametrize("bad_step", [0, 3, 6])  # 6: the short, padded last batch
def test_divergence_guard_stops_at_the_step_whose_batch_went_bad(prepared_dir, bad_step):
    train = load_split("train", prepared_dir)
    trainer = _sgd_trainer(train, 300)
    order = epoch_order(len(train), seed=3, epoch=1)
    images = train.images.copy()
    images[order[bad_step * 300 + 5], 100] = np.inf  # one pixel of one image of that batch
    result = trainer.train_epoch(Split(images=images, labels=train.labels), order)
    assert result.diverged_step == bad_step and not np.isfinite(result.diverged_loss)
    assert int(trainer.optimizer.iterations.numpy()) == bad_step + 1  # stopped there: no step after it ran


def test_compiled_epoch_traces_once_per_trainer(prepared_dir):
    train = load_split("train", prepared_dir)
    trainer = _sgd_trainer(train, 128)
    half = Split(images=train.images[:1000], labels=train.labels[:1000])
    for epoch, split in enumerate([train, train, half, train], start=1):
        trainer.train_epoch(split, epoch_order(len(split), seed=0, epoch=epoch))
    assert trainer._train_epoch.experimental_get_tracing_count() == 1


def _settings(**changes):
    """The train params fit reads (epochs, shuffle_seed, keep, patience), changed."""
    return load_params().train.model_copy(update=changes)


def _fit(prepared_dir, shuffle_seed, checkpoint=None):
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    trainer, settings = _trainer(train)
    history = fit(trainer, train=train, val=val, settings=settings.model_copy(update={"shuffle_seed": shuffle_seed}),
                  checkpoint=checkpoint, log=lambda line: None)
    return trainer, history


def test_same_seed_gives_identical_weights_and_another_seed_does_not(prepared_dir):
    first, history = _fit(prepared_dir, shuffle_seed=7)
    second, _ = _fit(prepared_dir, shuffle_seed=7)
    other, _ = _fit(prepared_dir, shuffle_seed=8)
    assert weights_digest(first.model) == weights_digest(second.model)
    assert weights_digest(first.model) != weights_digest(other.model)
    val_accuracy = [row.val_accuracy for row in history.rows]
    assert len(val_accuracy) == 3 and val_accuracy[0] < val_accuracy[-1] and val_accuracy[-1] > 0.7


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_weights(prepared_dir, tmp_path):
    uninterrupted, _ = _fit(prepared_dir, shuffle_seed=7)
    checkpoint = tmp_path / "checkpoint.npz"
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    trainer, settings = _trainer(train)
    fit(trainer, train=train, val=val, settings=settings.model_copy(update={"epochs": 1}), checkpoint=Checkpointing(checkpoint, "run"),
        log=lambda line: None)
    # A new process would build everything afresh; so do we, then resume epochs 2-3.
    resumed, settings = _trainer(train)
    messages = []
    fit(resumed, train=train, val=val, settings=settings, checkpoint=Checkpointing(checkpoint, "run"), log=messages.append)
    assert "resuming" in messages[0] and "after epoch 1 of 3" in messages[0]
    assert weights_digest(resumed.model) == weights_digest(uninterrupted.model)


class ScriptedTrainer(Trainer):
    """A trainer whose validation accuracy follows a script: epoch k sets every parameter to k."""

    def __init__(self, script: dict[int, float]) -> None:
        model = build_model(load_params().model.model_copy(update={"hidden": [4]}))
        super().__init__(model, make_optimizer(load_params().train, model.parameters, steps_per_epoch=1), loss="cross_entropy", batch_size=10)
        self.script, self.epoch, self.stop_before = script, 0, None

    def train_epoch(self, split, order, *, epoch=1):
        if epoch == self.stop_before:
            raise KeyboardInterrupt  # killed mid-epoch: the last checkpoint is the previous epoch's
        self.epoch = epoch
        for variable in self.model.parameters:
            variable.assign(tf.fill(variable.shape, float(epoch)))
        return EpochResult(loss=0.5, accuracy=0.9, diverged_step=-1, diverged_loss=0.0)

    def evaluate(self, split):
        return 0.1, self.script[self.epoch]


def _kept_epoch(trainer: Trainer) -> float:
    values = {float(value) for variable in trainer.model.parameters for value in np.unique(variable.numpy())}
    assert len(values) == 1
    return values.pop()


SCRIPT = {1: 0.5, 2: 0.8, 3: 0.7, 4: 0.8, 5: 0.6, 6: 0.75}


@pytest.mark.parametrize("keep, kept", [("best", 2), ("last", 6)])
def test_keep_chooses_the_best_validation_epoch_or_the_last(prepared_dir, keep, kept):
    split = load_split("val", prepared_dir)
    trainer = ScriptedTrainer(SCRIPT)
    history = fit(trainer, train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep=keep), log=lambda line: None)
    assert history.best_epoch == 2 and history.best_val_accuracy == 0.8  # the earliest of equals
    assert _kept_epoch(trainer) == kept == history.kept_epoch and len(history.rows) == 6


def test_keep_best_survives_a_kill_and_resume(prepared_dir, tmp_path):
    split, checkpoint = load_split("val", prepared_dir), tmp_path / "checkpoint.npz"
    settings = dict(train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep="best"), checkpoint=Checkpointing(checkpoint, "x"))
    killed = ScriptedTrainer(SCRIPT)
    killed.stop_before = 5
    with pytest.raises(KeyboardInterrupt):
        fit(killed, **settings, log=lambda line: None)
    resumed, messages = ScriptedTrainer(SCRIPT), []  # a new process: fresh weights, everything else from the checkpoint
    history = fit(resumed, **settings, log=messages.append)
    assert "after epoch 4 of 6" in messages[0]
    assert _kept_epoch(resumed) == 2 and history.best_epoch == 2 and [row.epoch for row in history.rows] == [1, 2, 3, 4, 5, 6]


def test_patience_stops_a_run_that_stopped_improving(prepared_dir, tmp_path):
    split, checkpoint = load_split("val", prepared_dir), tmp_path / "checkpoint.npz"
    messages = []
    history = fit(ScriptedTrainer(SCRIPT), train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep="best", patience=2),
                  checkpoint=Checkpointing(checkpoint, "x"), log=messages.append)
    assert [row.epoch for row in history.rows] == [1, 2, 3, 4] and history.stopped_early
    assert "stopping early, no better val accuracy for 2 epochs (best 0.8000 at epoch 2)" in messages[-1]
    # The early-stopped checkpoint is a finished run: a forced rerun trains from the start, like a completed one.
    again = fit(ScriptedTrainer(SCRIPT), train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep="best", patience=2),
                checkpoint=Checkpointing(checkpoint, "x"), log=lambda line: None)
    assert [row.epoch for row in again.rows] == [1, 2, 3, 4]


def test_checkpoint_from_other_params_is_not_resumed(prepared_dir, tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    _fit(prepared_dir, shuffle_seed=7, checkpoint=Checkpointing(checkpoint, "test"))
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    trainer, settings = _trainer(train)
    messages = []
    fit(trainer, train=train, val=val, settings=settings.model_copy(update={"epochs": 1}), checkpoint=Checkpointing(checkpoint, "other"),
        log=messages.append)
    assert "made with other params; not resuming" in messages[0]


def test_divergence_guard_names_epoch_step_and_causes(prepared_dir):
    """Seed 002's first attempt: pixels 0-255, init stddev 1, MSE: the loss went to 7e10 then NaN."""
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    unscaled = type(train)(images=train.images * 255.0, labels=train.labels)
    params = load_params()
    model = build_model(params.model.model_copy(update={"init_stddev": 1.0}))
    settings = params.train.model_copy(update={"loss": "mse", "lr": 1e-3, "lr_schedule": "constant", "batch_size": 100})
    trainer = Trainer(model, make_optimizer(settings, model.parameters, steps_per_epoch=20), loss="mse", batch_size=100)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf) at epoch 1, step \d+ of 20\. Likely causes: a learning rate too high, unscaled input"):
        fit(trainer, train=unscaled, val=val, settings=settings.model_copy(update={"epochs": 2}), log=lambda line: None)


@pytest.mark.parametrize("model_changes", [
    {"activation": "sigmoid"}, {"activation": "tanh"},
    {"init": "uniform", "init_range": [0.0, 0.1]}, {"init": "glorot"},
    {"hidden": []}, {"hidden": [512]},
])
def test_each_model_option_trains_and_lowers_the_loss(prepared_dir, model_changes):
    train = load_split("train", prepared_dir)
    params = load_params()
    model = build_model(params.model.model_copy(update=model_changes))
    settings = params.train.model_copy(update={"lr_schedule": "constant", "lr": 0.1})
    trainer = Trainer(model, make_optimizer(settings, model.parameters, steps_per_epoch=20), loss="cross_entropy", batch_size=100)
    before, _ = trainer.evaluate(train)
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=1))
    after, _ = trainer.evaluate(train)
    assert after < before, (before, after)


# ------------------------------------------------------------ tf.distribute


@pytest.mark.parametrize("size, batch_size, replicas", [(2000, 100, 2), (1999, 100, 2), (1901, 100, 2), (10, 4, 3), (7, 100, 8)])
def test_replica_pieces_reassemble_the_single_device_batches(size, batch_size, replicas):
    order = epoch_order(size, seed=3, epoch=1)
    pieces = replica_pieces(order, batch_size=batch_size, num_replicas=replicas)
    assert len(pieces) == steps_per_epoch(size, batch_size) * replicas
    for step in range(steps_per_epoch(size, batch_size)):
        batch = pieces[step * replicas : (step + 1) * replicas]
        assert np.array_equal(np.concatenate(batch), order[step * batch_size : (step + 1) * batch_size])
        assert max(map(len, batch)) - min(map(len, batch)) <= 1


@pytest.mark.parametrize("size, batch_size, optimizer", [
    (2000, 96, "sgd"),       # last batch 80: 40 + 40
    (1999, 100, "adam"),     # last batch 99: 50 + 49
    (1901, 100, "momentum"),  # last batch 1: one replica gets an empty piece
])
def test_mirrored_on_two_cpus_follows_single_device_training(prepared_dir, two_cpus, size, batch_size, optimizer):
    full = load_split("train", prepared_dir)
    train = Split(images=full.images[:size], labels=full.labels[:size])
    lr = {"sgd": 0.5, "adam": 1e-3, "momentum": 0.05}[optimizer]
    single, _ = _trainer(train, batch_size=batch_size, optimizer=optimizer, lr=lr)
    mirrored, _ = _trainer(train, two_cpus, batch_size=batch_size, optimizer=optimizer, lr=lr)
    assert isinstance(mirrored, DistributedTrainer) and type(single) is Trainer
    for epoch in (1, 2):
        order = epoch_order(size, seed=7, epoch=epoch)
        expected, result = single.train_epoch(train, order), mirrored.train_epoch(train, order)
        assert result.diverged_step == -1
        assert result.loss == pytest.approx(expected.loss, rel=1e-5) and result.accuracy == pytest.approx(expected.accuracy, abs=1e-6)
    assert int(mirrored.optimizer.iterations.numpy()) == int(single.optimizer.iterations.numpy()) == 2 * steps_per_epoch(size, batch_size)
    state = lambda trainer: [*trainer.model.parameters, *trainer.optimizer.variables[1:]]  # noqa: E731
    max_difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(state(single), state(mirrored)))
    print(f"mirrored vs single device, {size} images, batch {batch_size}, {optimizer}: max |difference| {max_difference:.3g}")
    assert max_difference < 1e-5
    assert max_difference > 0 or optimizer == "sgd"  # a different summation order: not the same code path by accident


def test_mirrored_with_dropout_and_augmentation_follows_single_device_training(prepared_dir, two_cpus):
    """Masks and distortions follow the example index, so each replica draws what the single device drew for it."""
    full = load_split("train", prepared_dir)
    train = Split(images=full.images[:590], labels=full.labels[:590])  # 6 steps of batch 100, the last one short
    settings = dict(batch_size=100, optimizer="momentum", lr=0.05, augment_changes=RECIPE_AUGMENT, **RECIPE_TRAIN)
    single, _ = _trainer(train, **settings)
    mirrored, _ = _trainer(train, two_cpus, **settings)
    plain, _ = _trainer(train, batch_size=100, optimizer="momentum", lr=0.05)
    for epoch in (1, 2):
        order = epoch_order(len(train), seed=7, epoch=epoch)
        expected, result = single.train_epoch(train, order, epoch=epoch), mirrored.train_epoch(train, order, epoch=epoch)
        plain.train_epoch(train, order, epoch=epoch)
        assert result.loss == pytest.approx(expected.loss, rel=1e-5)
    difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.model.parameters, mirrored.model.parameters))
    regularized = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.model.parameters, plain.model.parameters))
    print(f"mirrored vs single device with dropout and augmentation: max |difference| {difference:.3g} (vs without them: {regularized:.3g})")
    assert difference < 1e-5 < regularized


def test_mirrored_fit_resumes_and_guards_against_divergence(prepared_dir, two_cpus, tmp_path):
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    uninterrupted, _ = _trainer(train, two_cpus)
    fit(uninterrupted, train=train, val=val, settings=_settings(epochs=3), log=lambda line: None)
    first, _ = _trainer(train, two_cpus)
    checkpoint = Checkpointing(tmp_path / "checkpoint.npz", "run")
    fit(first, train=train, val=val, settings=_settings(epochs=1), checkpoint=checkpoint, log=lambda line: None)
    resumed, _ = _trainer(train, two_cpus)
    history = fit(resumed, train=train, val=val, settings=_settings(epochs=3), checkpoint=checkpoint, log=lambda line: None)
    assert [row.epoch for row in history.rows] == [1, 2, 3]
    assert weights_digest(resumed.model) == weights_digest(uninterrupted.model)

    unscaled = Split(images=train.images * 255.0, labels=train.labels)
    diverging, _ = _trainer(train, two_cpus, loss="mse", lr=1e-3, lr_schedule="constant")
    for variable in diverging.model.weights:
        variable.assign(variable * 10.0)  # stddev 1, as seed 002's first attempt
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step \d+ of 20"):
        fit(diverging, train=unscaled, val=val, settings=_settings(epochs=1), log=lambda line: None)
