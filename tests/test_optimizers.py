"""digits/optimizers.py: every rule updates the same Variables in place and lowers the loss."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from digits.data import load_split
from digits.model import build_model
from digits.optimizers import LearningRate, make_optimizer
from digits.params import load_params
from digits.trainer import Trainer
from digits.training import epoch_order


# Each optimizer with cross-entropy, and plain SGD with MSE, in the quick loop; the other MSE pairs compile three more
# epochs (seconds each) and run with the slow tests.
@pytest.mark.parametrize(
    "optimizer, lr, loss",
    [
        ("sgd", 0.5, "cross_entropy"),
        ("momentum", 0.05, "cross_entropy"),
        ("rmsprop", 1e-3, "cross_entropy"),
        ("adam", 1e-3, "cross_entropy"),
        ("sgd", 0.5, "mse"),
        pytest.param("momentum", 0.05, "mse", marks=pytest.mark.slow),
        pytest.param("rmsprop", 1e-3, "mse", marks=pytest.mark.slow),
        pytest.param("adam", 1e-3, "mse", marks=pytest.mark.slow),
    ],
)
def test_one_epoch_of_each_optimizer_and_loss_lowers_the_loss(prepared_dir, optimizer, lr, loss):
    params = load_params()
    train = load_split("train", prepared_dir)
    model = build_model(params.model.model_copy(update={"hidden": [64, 32]}))
    variables_before = [id(v) for v in model.parameters]
    settings = params.train.model_copy(
        update={"optimizer": optimizer, "lr": lr, "loss": loss, "lr_schedule": "constant"}
    )
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
    np.testing.assert_allclose(
        [float(cosine(tf.constant(s))) for s in (0, 50, 100, 150)], [0.5, 0.25, 0.0, 0.0], atol=1e-7
    )


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


def _one_step(optimizer_name: str, *, weight_decay: float, nesterov: bool = False, steps: int = 1, lr: float = 0.1):
    """(weight before, bias before, weight after, bias after) of ``steps`` steps with a fixed gradient of 0.5
    everywhere.
    """
    model = build_model(load_params().model.model_copy(update={"hidden": [4]}), input_size=3)
    settings = load_params().train.model_copy(
        update={
            "optimizer": optimizer_name,
            "lr": lr,
            "lr_schedule": "constant",
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "momentum": 0.9,
        }
    )
    optimizer = make_optimizer(settings, model.parameters, steps_per_epoch=5)
    model.biases[0].assign(tf.ones([4]))
    weight, bias = model.weights[0].numpy(), model.biases[0].numpy()
    for _ in range(steps):
        optimizer.apply([tf.fill(v.shape, 0.5) for v in model.parameters], model.parameters)
    return weight, bias, model.weights[0].numpy(), model.biases[0].numpy()


def test_weight_decay_for_sgd_is_l2_on_the_gradient_of_weights_not_biases():
    w, b, w1, b1 = _one_step("sgd", weight_decay=0.01)
    np.testing.assert_allclose(w1, w - 0.1 * (0.5 + 0.01 * w), rtol=1e-6)
    np.testing.assert_allclose(b1, b - 0.1 * 0.5, rtol=1e-6)


def test_weight_decay_for_adam_is_decoupled_as_in_adamw():
    w, _, w1, b1 = _one_step("adam", weight_decay=0.01)
    _, _, plain_w1, plain_b1 = _one_step("adam", weight_decay=0.0)
    # AdamW: W <- W - lr * wd * W, then the Adam step, which does not see the decay at all
    np.testing.assert_allclose(w1, plain_w1 - 0.1 * 0.01 * w, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(b1, plain_b1)


def test_nesterov_momentum_looks_ahead():
    # two steps of constant gradient g: v1 = g, v2 = 1.9 g; Nesterov moves lr * (g + 0.9 v) each step
    w, _, w2, _ = _one_step("momentum", weight_decay=0.0, nesterov=True, steps=2)
    np.testing.assert_allclose(w2, w - 0.1 * 0.5 * ((1 + 0.9) + (1 + 0.9 * 1.9)), rtol=1e-6)
    w, _, w2, _ = _one_step("momentum", weight_decay=0.0, nesterov=False, steps=2)
    np.testing.assert_allclose(w2, w - 0.1 * 0.5 * (1 + 1.9), rtol=1e-6)


def test_linear_warmup_then_the_schedule_over_the_remaining_steps():
    cosine = LearningRate(
        lr=0.4, schedule="cosine", decay_rate=0.9, steps_per_epoch=10, total_steps=120, warmup_steps=20
    )
    rates = [float(cosine(tf.constant(step))) for step in (0, 9, 19, 20, 70, 120)]
    np.testing.assert_allclose(rates, [0.02, 0.2, 0.4, 0.4, 0.2, 0.0], atol=1e-7)
    constant = LearningRate(
        lr=0.4, schedule="constant", decay_rate=0.9, steps_per_epoch=10, total_steps=120, warmup_steps=4
    )
    np.testing.assert_allclose(
        [float(constant(tf.constant(s))) for s in (0, 3, 4, 99)], [0.1, 0.4, 0.4, 0.4], atol=1e-7
    )
