"""digits/distributed_trainer.py: mirrored training on two CPU devices follows single-device training, with
dropout and augmentation too, resumes and guards against divergence."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import RECIPE_AUGMENT, RECIPE_TRAIN, fit_on_slice, make_trainer
from digits.data import Split, load_split, steps_per_epoch
from digits.distributed_trainer import DistributedTrainer, replica_pieces
from digits.model import weights_digest
from digits.params import load_params
from digits.trainer import Trainer
from digits.training import Checkpointing, TrainingDiverged, epoch_order, fit

# tf.distribute on two logical CPUs: each test compiles both trainers (see pyproject.toml's slow marker)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_cpus():
    """MirroredStrategy over the two logical CPU devices conftest sets up."""
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.mark.parametrize(
    "size, batch_size, replicas", [(2000, 100, 2), (1999, 100, 2), (1901, 100, 2), (10, 4, 3), (7, 100, 8)]
)
def test_replica_pieces_reassemble_the_single_device_batches(size, batch_size, replicas):
    order = epoch_order(size, seed=3, epoch=1)
    pieces = replica_pieces(order, batch_size=batch_size, num_replicas=replicas)
    assert len(pieces) == steps_per_epoch(size, batch_size) * replicas
    for step in range(steps_per_epoch(size, batch_size)):
        batch = pieces[step * replicas : (step + 1) * replicas]
        assert np.array_equal(np.concatenate(batch), order[step * batch_size : (step + 1) * batch_size])
        assert max(map(len, batch)) - min(map(len, batch)) <= 1


@pytest.mark.parametrize(
    "size, batch_size, optimizer",
    [
        (2000, 96, "sgd"),  # last batch 80: 40 + 40
        (1999, 100, "adam"),  # last batch 99: 50 + 49
        (1901, 100, "momentum"),  # last batch 1: one replica gets an empty piece
    ],
)
def test_mirrored_on_two_cpus_follows_single_device_training(prepared_dir, two_cpus, size, batch_size, optimizer):
    full = load_split("train", prepared_dir)
    train = Split(images=full.images[:size], labels=full.labels[:size])
    lr = {"sgd": 0.5, "adam": 1e-3, "momentum": 0.05}[optimizer]
    single, _ = make_trainer(train, batch_size=batch_size, optimizer=optimizer, lr=lr)
    mirrored, _ = make_trainer(train, two_cpus, batch_size=batch_size, optimizer=optimizer, lr=lr)
    assert isinstance(mirrored, DistributedTrainer) and type(single) is Trainer
    for epoch in (1, 2):
        order = epoch_order(size, seed=7, epoch=epoch)
        expected, result = single.train_epoch(train, order), mirrored.train_epoch(train, order)
        assert result.diverged_step == -1
        assert result.loss == pytest.approx(expected.loss, rel=1e-5) and result.accuracy == pytest.approx(
            expected.accuracy, abs=1e-6
        )
    assert (
        int(mirrored.optimizer.iterations.numpy())
        == int(single.optimizer.iterations.numpy())
        == 2 * steps_per_epoch(size, batch_size)
    )
    state = lambda trainer: [*trainer.model.parameters, *trainer.optimizer.variables[1:]]  # noqa: E731
    max_difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(state(single), state(mirrored)))
    print(
        f"mirrored vs single device, {size} images, batch {batch_size}, {optimizer}: max |difference| "
        f"{max_difference:.3g}"
    )
    assert max_difference < 1e-5
    assert max_difference > 0 or optimizer == "sgd"  # a different summation order: not the same code path by accident


def test_mirrored_with_dropout_and_augmentation_follows_single_device_training(prepared_dir, two_cpus):
    """Masks and distortions follow the example index, so each replica draws what the single device drew for it."""
    full = load_split("train", prepared_dir)
    train = Split(images=full.images[:590], labels=full.labels[:590])  # 6 steps of batch 100, the last one short
    settings = dict(batch_size=100, optimizer="momentum", lr=0.05, augment_changes=RECIPE_AUGMENT, **RECIPE_TRAIN)
    single, _ = make_trainer(train, **settings)
    mirrored, _ = make_trainer(train, two_cpus, **settings)
    plain, _ = make_trainer(train, batch_size=100, optimizer="momentum", lr=0.05)
    for epoch in (1, 2):
        order = epoch_order(len(train), seed=7, epoch=epoch)
        expected, result = (
            single.train_epoch(train, order, epoch=epoch),
            mirrored.train_epoch(train, order, epoch=epoch),
        )
        plain.train_epoch(train, order, epoch=epoch)
        assert result.loss == pytest.approx(expected.loss, rel=1e-5)
    difference = max(
        float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.model.parameters, mirrored.model.parameters)
    )
    regularized = max(
        float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(single.model.parameters, plain.model.parameters)
    )
    print(
        f"mirrored vs single device with dropout and augmentation: max |difference| {difference:.3g} (vs without them: "
        f"{regularized:.3g})"
    )
    assert difference < 1e-5 < regularized


def test_mirrored_fit_resumes_and_guards_against_divergence(prepared_dir, two_cpus, tmp_path):
    uninterrupted, _ = fit_on_slice(prepared_dir, two_cpus)
    checkpoint = Checkpointing(tmp_path / "checkpoint.npz", "run")
    fit_on_slice(prepared_dir, two_cpus, run={"epochs": 1}, checkpoint=checkpoint)
    resumed, history = fit_on_slice(prepared_dir, two_cpus, checkpoint=checkpoint)
    assert [row.epoch for row in history.rows] == [1, 2, 3]
    assert weights_digest(resumed.model) == weights_digest(uninterrupted.model)

    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    unscaled = Split(images=train.images * 255.0, labels=train.labels)
    diverging, _ = make_trainer(train, two_cpus, loss="mse", lr=1e-3, lr_schedule="constant")
    for variable in diverging.model.weights:
        variable.assign(variable * 10.0)  # stddev 1, as seed 002's first attempt
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, step \d+ of 20"):
        fit(
            diverging,
            train=unscaled,
            val=val,
            settings=load_params().train.model_copy(update=dict(epochs=1)),
            log=lambda line: None,
        )
