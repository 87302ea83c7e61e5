"""digits/averaging.py: the moving average follows its formula; fit validates, keeps, saves and resumes the average."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from conftest import fit_on_slice, make_trainer
from digits.averaging import WeightAverage, moving_average, ramped_decay
from digits.checkpoints import load_npz
from digits.data import Split, load_split
from digits.distributed_trainer import DistributedTrainer
from digits.model import Mlp, weights_digest
from digits.params import load_params
from digits.training import Checkpointing, epoch_order, fit


def test_the_decay_ramps_up_as_tensorflows_moving_average_does_then_stays():
    decays = [float(ramped_decay(0.99, updates)) for updates in (0, 1, 8, 10_000)]
    assert decays[:3] == pytest.approx([1 / 10, 2 / 11, 9 / 18])
    assert decays[3] == pytest.approx(0.99)


def test_one_update_of_the_average_is_the_formula():
    model = Mlp([3, 2], activation="relu")
    rng = np.random.default_rng(0)
    model.set_arrays({"W0": rng.normal(size=(3, 2)).astype(np.float32), "b0": rng.normal(size=2).astype(np.float32)})
    average = WeightAverage(model, decay=0.9)
    before = average.model.get_arrays()
    np.testing.assert_array_equal(before["W0"], model.get_arrays()["W0"])  # it starts at the weights
    for variable in model.parameters:
        variable.assign_add(tf.ones_like(variable))
    average.update(model.parameters, updates=tf.constant(100, tf.int64))  # past the ramp: decay 0.9
    for name, value in model.get_arrays().items():
        expected = before[name] + np.float32(1 - np.float32(0.9)) * (value - before[name])
        np.testing.assert_allclose(average.model.get_arrays()[name], expected, rtol=1e-6)
        np.testing.assert_allclose(average.model.get_arrays()[name], 0.1 * value + 0.9 * before[name], rtol=1e-5)
    assert float(moving_average(tf.constant(2.0), tf.constant(4.0), tf.constant(0.75))) == 2.5


def _fit_averaged(prepared_dir, *, epochs=3, checkpoint=None, strategy=None, **changes):
    return fit_on_slice(
        prepared_dir, strategy, run={"epochs": epochs}, checkpoint=checkpoint, ema_decay=0.99, **changes
    )


def test_the_average_is_what_validation_measures_and_what_the_run_keeps(prepared_dir):
    trainer, history = _fit_averaged(prepared_dir)
    val = load_split("val", prepared_dir)
    averaged = weights_digest(trainer.average.model)
    assert weights_digest(trainer.model) == averaged  # the model the stage saves is the average
    assert trainer.evaluate(val)[1] == history.rows[-1].val_accuracy
    plain, _ = make_trainer(load_split("train", prepared_dir))
    fit(
        plain,
        train=load_split("train", prepared_dir),
        val=val,
        settings=load_params().train.model_copy(update={"epochs": 3}),
        log=lambda line: None,
    )
    assert weights_digest(plain.model) != averaged and history.rows[-1].val_accuracy > 0.7


def test_keep_best_keeps_the_average_of_the_best_epoch(prepared_dir):
    trainer, history = _fit_averaged(prepared_dir, keep="best")
    val = load_split("val", prepared_dir)
    assert weights_digest(trainer.average.model) != weights_digest(trainer.model) or history.best_epoch == 3
    trainer.average.model.set_arrays(trainer.model.get_arrays())  # the kept weights, measured as the run measured them
    assert trainer.evaluate(val)[1] == history.best_val_accuracy


def test_resuming_with_averaging_gives_the_uninterrupted_bits(prepared_dir, tmp_path):
    uninterrupted, _ = _fit_averaged(prepared_dir)
    checkpoint = Checkpointing(tmp_path / "checkpoint.npz", "run")
    _fit_averaged(prepared_dir, epochs=1, checkpoint=checkpoint)
    assert "average/W0" in load_npz(checkpoint.path)
    resumed, history = _fit_averaged(prepared_dir, checkpoint=checkpoint)
    assert [row.epoch for row in history.rows] == [1, 2, 3]
    assert weights_digest(resumed.model) == weights_digest(uninterrupted.model)


@pytest.mark.slow  # tf.distribute on two logical CPUs
def test_mirrored_averaging_follows_single_device_averaging(prepared_dir):
    full = load_split("train", prepared_dir)
    train = Split(images=full.images[:990], labels=full.labels[:990])
    single, _ = make_trainer(train, ema_decay=0.9, optimizer="momentum", lr=0.05)
    mirrored, _ = make_trainer(
        train, tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), ema_decay=0.9, optimizer="momentum", lr=0.05
    )
    assert isinstance(mirrored, DistributedTrainer)
    for epoch in (1, 2):
        order = epoch_order(len(train), seed=7, epoch=epoch)
        single.train_epoch(train, order, epoch=epoch)
        mirrored.train_epoch(train, order, epoch=epoch)
    pairs = list(zip(single.average.model.parameters, mirrored.average.model.parameters))
    moved = max(
        float(np.max(np.abs(a.numpy() - w.numpy())))
        for a, w in zip(single.average.model.parameters, single.model.parameters)
    )
    difference = max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in pairs)
    assert difference < 1e-5 < moved  # the same average, and one that is not simply the weights
