"""stages/baseline.py: Keras trains the same network and recipe from the same start and reports the same keys."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import run_stage, small_params, write_params
from digits.model import initial_arrays
from digits.optimizers import LearningRate
from digits.params import parse_params
from digits.keras_reference import build_keras_model, keras_optimizer


def test_keras_model_starts_from_the_hand_built_models_weights():
    params = parse_params(small_params()).model
    keras_model = build_keras_model(params, input_size=784)
    expected = initial_arrays([784, *params.hidden, 10], params)
    assert all(np.array_equal(a, b) for a, b in zip(keras_model.get_weights(), expected))


@pytest.mark.slow
def test_baseline_metrics_have_the_keys_of_evaluate(tmp_path, prepared_dir):
    shutil.copytree(prepared_dir, tmp_path / "data" / "prepared")
    write_params(tmp_path, small_params(train={"epochs": 1}))
    for stage in ("stages.train", "stages.evaluate", "stages.baseline"):
        result = run_stage(stage, tmp_path)
        assert result.returncode == 0, (stage, result.stderr)
    baseline = json.loads((tmp_path / "metrics/baseline.json").read_text())
    evaluate = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert baseline.keys() == evaluate.keys() and baseline["per_class"].keys() == evaluate["per_class"].keys()
    assert 0.5 < baseline["accuracy"] <= 1 and baseline["examples"] == 1000


RECIPE = {
    "model": {"init": "he"},
    "train": {"optimizer": "momentum", "nesterov": True, "lr": 0.05, "warmup_epochs": 1, "epochs": 3, "weight_decay": 1e-4,
              "max_norm": 3.0, "label_smoothing": 0.1, "dropout_input": 0.1, "dropout_hidden": 0.25, "keep": "best", "patience": 2},
    "augment": {"rotation": 12.0, "scale": 0.1, "shift": 2.0, "shear": 5.0, "elastic_alpha": 30.0, "elastic_sigma": 5.0},
}


def test_keras_model_carries_the_recipe_as_keras_layers_and_settings():
    params = parse_params(small_params(**RECIPE))
    model = build_keras_model(params.model, input_size=784, train=params.train, augment=params.augment)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Reshape", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomShear", "ElasticTransform", "Flatten",
                     "Dropout", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    rates = [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"]
    assert rates == [0.1, 0.25, 0.25]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    assert all(layer.kernel_regularizer.l2 == pytest.approx(5e-5) and layer.kernel_constraint.max_value == 3.0 for layer in dense)
    expected = initial_arrays([784, 64, 32, 10], params.model)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), expected))
    probe = np.random.default_rng(0).random((4, 784), np.float32)
    assert np.array_equal(model(probe, training=False).numpy(), model(probe, training=False).numpy())  # no noise at inference


def test_keras_uses_the_same_learning_rate_schedule_and_optimizer_settings():
    settings = parse_params(small_params(**RECIPE)).train
    optimizer = keras_optimizer(settings, steps=20)
    rate = LearningRate(lr=0.05, schedule="cosine", decay_rate=settings.lr_decay_rate, steps_per_epoch=20, total_steps=60, warmup_steps=20)
    for step in (0, 10, 19, 20, 40, 59):
        optimizer.iterations.assign(step)
        assert float(optimizer.learning_rate) == pytest.approx(float(rate(step)))
    assert optimizer.nesterov and optimizer.momentum == 0.9
    adamw = keras_optimizer(settings.model_copy(update={"optimizer": "adam", "nesterov": False}), steps=20)
    assert type(adamw).__name__ == "AdamW" and adamw.weight_decay == 1e-4


@pytest.mark.slow
def test_baseline_stage_trains_the_recipe(tmp_path, prepared_dir):
    shutil.copytree(prepared_dir, tmp_path / "data" / "prepared")
    write_params(tmp_path, small_params(**RECIPE))
    result = run_stage("stages.baseline", tmp_path)
    assert result.returncode == 0, result.stderr
    baseline = json.loads((tmp_path / "metrics/baseline.json").read_text())
    assert 0.6 < baseline["accuracy"] <= 1 and baseline["examples"] == 1000  # 2,000 heavily distorted images, 3 epochs
