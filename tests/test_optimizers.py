"""digits/optimizers.py: every rule updates the same Variables in place and lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from digits.data import load_split
from digits.model import build_model
from digits.optimizers import LearningRate, make_optimizer
from digits.params import load_params
from digits.training import Trainer, epoch_order


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.5), ("momentum", 0.05), ("rmsprop", 1e-3), ("adam", 1e-3)])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_one_epoch_of_each_optimizer_and_loss_lowers_the_loss(prepared_dir, optimizer, lr, loss):
    params = load_params()
    train = load_split("train", prepared_dir)
    model = build_model(params.model.model_copy(update={"hidden": [64, 32]}))
    variables_before = [id(v) for v in model.parameters]
    settings = params.train.model_copy(update={"optimizer": optimizer, "lr": lr, "loss": loss, "lr_schedule": "constant"})
    trainer = Trainer(model, make_optimizer(settings, model.parameters, steps_per_epoch=20), loss=loss, batch_size=100)
    before, _ = trainer.evaluate(train)
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=1))
    after, _ = trainer.evaluate(train)
    assert after < before * 0.95, (before, after)
    assert [id(v) for v in model.parameters] == variables_before  # updated in place, never replaced
    assert int(trainer.optimizer.iterations.numpy()) == 20


def test_learning_rate_schedules():
    constant = LearningRate(lr=0.5, schedule="constant", decay_rate=0.9, steps_per_epoch=10, total_steps=100)
    exponential = LearningRate(lr=0.5, schedule="exponential", decay_rate=0.9, steps_per_epoch=10, total_steps=100)
    cosine = LearningRate(lr=0.5, schedule="cosine", decay_rate=0.9, steps_per_epoch=10, total_steps=100)
    assert float(constant(tf.constant(70))) == 0.5
    np.testing.assert_allclose(float(exponential(tf.constant(20))), 0.5 * 0.81, rtol=1e-6)
    np.testing.assert_allclose([float(cosine(tf.constant(s))) for s in (0, 50, 100, 150)], [0.5, 0.25, 0.0, 0.0], atol=1e-7)


def test_optimizer_state_round_trips():
    model = build_model(load_params().model.model_copy(update={"hidden": [8]}))
    settings = load_params().train.model_copy(update={"optimizer": "adam"})
    optimizer = make_optimizer(settings, model.parameters, steps_per_epoch=5)
    optimizer.apply([tf.ones_like(v) for v in model.parameters], model.parameters)
    state = optimizer.state_arrays()
    fresh = make_optimizer(settings, model.parameters, steps_per_epoch=5)
    fresh.load_state_arrays(state)
    assert {k: v.tolist() for k, v in fresh.state_arrays().items()} == {k: v.tolist() for k, v in state.items()}
    assert int(state["iterations"]) == 1 and state["m_0"].shape == (784, 8)
