"""digits/training.py: runs are bit-reproducible, resume is exact, keep and patience choose and stop as
documented, and a diverged run names its epoch, step and causes."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import fit_on_slice
from digits.data import load_split
from digits.model import build_model, weights_digest
from digits.optimizers import make_optimizer
from digits.params import load_params
from digits.trainer import EpochResult, Trainer
from digits.training import Checkpointing, TrainingDiverged, epoch_order, fit


def test_epoch_order_is_a_seeded_permutation():
    order = epoch_order(1000, seed=7, epoch=2)
    assert sorted(order.tolist()) == list(range(1000))
    assert np.array_equal(order, epoch_order(1000, seed=7, epoch=2))
    assert not np.array_equal(order, epoch_order(1000, seed=7, epoch=3))


def _settings(**changes):
    """The train params fit reads (epochs, shuffle_seed, keep, patience), changed."""
    return load_params().train.model_copy(update=changes)


def _fit(prepared_dir, shuffle_seed, checkpoint=None):
    return fit_on_slice(prepared_dir, run={"shuffle_seed": shuffle_seed}, checkpoint=checkpoint)


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
    fit_on_slice(prepared_dir, run={"epochs": 1}, checkpoint=Checkpointing(checkpoint, "run"))
    # A new process would build everything afresh; so do we, then resume epochs 2-3.
    messages = []
    resumed, _ = fit_on_slice(prepared_dir, checkpoint=Checkpointing(checkpoint, "run"), log=messages.append)
    assert "resuming" in messages[0] and "after epoch 1 of 3" in messages[0]
    assert weights_digest(resumed.model) == weights_digest(uninterrupted.model)


class ScriptedTrainer(Trainer):
    """A trainer whose validation accuracy follows a script: epoch k sets every parameter to k."""

    def __init__(self, script: dict[int, float]) -> None:
        model = build_model(load_params().model.model_copy(update={"hidden": [4]}))
        super().__init__(
            model,
            make_optimizer(load_params().train, model.parameters, steps_per_epoch=1),
            loss="cross_entropy",
            batch_size=10,
        )
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
    history = fit(
        trainer, train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep=keep), log=lambda line: None
    )
    assert history.best_epoch == 2 and history.best_val_accuracy == 0.8  # the earliest of equals
    assert _kept_epoch(trainer) == kept == history.kept_epoch and len(history.rows) == 6


def test_keep_best_survives_a_kill_and_resume(prepared_dir, tmp_path):
    split, checkpoint = load_split("val", prepared_dir), tmp_path / "checkpoint.npz"
    settings = dict(
        train=split,
        val=split,
        settings=_settings(epochs=6, shuffle_seed=1, keep="best"),
        checkpoint=Checkpointing(checkpoint, "x"),
    )
    killed = ScriptedTrainer(SCRIPT)
    killed.stop_before = 5
    with pytest.raises(KeyboardInterrupt):
        fit(killed, **settings, log=lambda line: None)
    resumed, messages = ScriptedTrainer(SCRIPT), []  # a new process: fresh weights, everything else from the checkpoint
    history = fit(resumed, **settings, log=messages.append)
    assert "after epoch 4 of 6" in messages[0]
    assert (
        _kept_epoch(resumed) == 2
        and history.best_epoch == 2
        and [row.epoch for row in history.rows] == [1, 2, 3, 4, 5, 6]
    )


def test_patience_stops_a_run_that_stopped_improving(prepared_dir, tmp_path):
    split, checkpoint = load_split("val", prepared_dir), tmp_path / "checkpoint.npz"
    messages = []
    run = dict(train=split, val=split, settings=_settings(epochs=6, shuffle_seed=1, keep="best", patience=2))
    history = fit(ScriptedTrainer(SCRIPT), **run, checkpoint=Checkpointing(checkpoint, "x"), log=messages.append)
    assert [row.epoch for row in history.rows] == [1, 2, 3, 4] and history.stopped_early
    assert "stopping early, no better val accuracy for 2 epochs (best 0.8000 at epoch 2)" in messages[-1]
    # The early-stopped checkpoint is a finished run: a forced rerun trains from the start, like a completed one.
    again = fit(ScriptedTrainer(SCRIPT), **run, checkpoint=Checkpointing(checkpoint, "x"), log=lambda line: None)
    assert [row.epoch for row in again.rows] == [1, 2, 3, 4]


def test_checkpoint_from_other_params_is_not_resumed(prepared_dir, tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    _fit(prepared_dir, shuffle_seed=7, checkpoint=Checkpointing(checkpoint, "test"))
    messages = []
    fit_on_slice(prepared_dir, run={"epochs": 1}, checkpoint=Checkpointing(checkpoint, "other"), log=messages.append)
    assert "made with other params; not resuming" in messages[0]


def test_divergence_guard_names_epoch_step_and_causes(prepared_dir):
    """Seed 002's first attempt: pixels 0-255, init stddev 1, MSE: the loss went to 7e10 then NaN."""
    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    unscaled = type(train)(images=train.images * 255.0, labels=train.labels)
    params = load_params()
    model = build_model(params.model.model_copy(update={"init_stddev": 1.0}))
    settings = params.train.model_copy(update={"loss": "mse", "lr": 1e-3, "lr_schedule": "constant", "batch_size": 100})
    trainer = Trainer(model, make_optimizer(settings, model.parameters, steps_per_epoch=20), loss="mse", batch_size=100)
    with pytest.raises(
        TrainingDiverged,
        match=r"loss became (nan|inf) at epoch 1, step \d+ of 20\. Likely causes: a learning rate too high, unscaled "
        r"input",
    ):
        fit(trainer, train=unscaled, val=val, settings=settings.model_copy(update={"epochs": 2}), log=lambda line: None)
