"""digits/keras_reference.py: the Keras model starts from the hand-built model's weights and carries the recipe as
Keras layers, regularisers, constraints and the same learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import small_params
from digits.keras_reference import build_keras_model, keras_optimizer
from digits.model import initial_arrays
from digits.optimizers import LearningRate
from digits.params import parse_params
from digits.scratch import EVERY_AUGMENTATION


def test_keras_model_starts_from_the_hand_built_models_weights():
    params = parse_params(small_params()).model
    keras_model = build_keras_model(params, input_size=784)
    expected = initial_arrays([784, *params.hidden, 10], params)
    assert all(np.array_equal(a, b) for a, b in zip(keras_model.get_weights(), expected))


RECIPE = {
    "model": {"init": "he"},
    "train": {
        "optimizer": "momentum",
        "nesterov": True,
        "lr": 0.05,
        "warmup_epochs": 1,
        "epochs": 3,
        "weight_decay": 1e-4,
        "max_norm": 3.0,
        "label_smoothing": 0.1,
        "dropout_input": 0.1,
        "dropout_hidden": 0.25,
        "keep": "best",
        "patience": 2,
    },
    "augment": EVERY_AUGMENTATION,
}


def test_keras_model_carries_the_recipe_as_keras_layers_and_settings():
    params = parse_params(small_params(**RECIPE))
    model = build_keras_model(params.model, input_size=784, train=params.train, augment=params.augment)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == [
        "Reshape",
        "RandomRotation",
        "RandomZoom",
        "RandomTranslation",
        "RandomShear",
        "ElasticTransform",
        "Flatten",
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
        "Dropout",
        "Dense",
    ]
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert rates == [0.1, 0.25, 0.25]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert all(
        layer.kernel_regularizer.l2 == pytest.approx(5e-5) and layer.kernel_constraint.max_value == 3.0
        for layer in dense
    )
    expected = initial_arrays([784, 64, 32, 10], params.model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), expected))
    probe = np.random.default_rng(0).random((4, 784), np.float32)
    assert np.array_equal(
        model(probe, training=False).numpy(), model(probe, training=False).numpy()
    )  # no noise at inference


def test_keras_uses_the_same_learning_rate_schedule_and_optimizer_settings():
    settings = parse_params(small_params(**RECIPE)).train
    optimizer = keras_optimizer(settings, steps=20)
    rate = LearningRate(
        lr=0.05,
        schedule="cosine",
        decay_rate=settings.lr_decay_rate,
        steps_per_epoch=20,
        total_steps=60,
        warmup_steps=20,
    )
    for step in (0, 10, 19, 20, 40, 59):
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(float(rate(step)))
    assert optimizer.nesterov and optimizer.momentum == 0.9
    adamw = keras_optimizer(settings.model_copy(update={"optimizer": "adam", "nesterov": False}), steps=20)
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == 1e-4
