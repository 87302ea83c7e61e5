"""stages/baseline.py: Keras trains the same network from the same start and reports the same keys."""

from __future__ import annotations

import json
import shutil

import numpy as np

from conftest import run_stage, small_params, write_params
from digits.model import initial_arrays
from digits.params import parse_params
from stages.baseline import build_keras_model


def test_keras_model_starts_from_the_hand_built_models_weights():
    params = parse_params(small_params()).model
    keras_model = build_keras_model(params, input_size=784)
    expected = initial_arrays([784, *params.hidden, 10], params)
    assert all(np.array_equal(a, b) for a, b in zip(keras_model.get_weights(), expected))


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
