"""stages/evaluate.py on a model whose answer is known, a missing model, and test-time augmentation beside the plain
network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_stage, small_params, write_params
from digits.artifacts import save_npz


@pytest.mark.slow
def test_stage_on_a_model_with_a_known_answer(tmp_path):
    # Image k lights pixel (k % 10); a softmax regression that copies pixels 0-9 to
    # logits 0-9 predicts k % 10. Two labels are set wrong, so accuracy is 18/20.
    predicted = np.arange(20) % 10
    images = np.zeros((20, 784), np.float32)
    images[np.arange(20), predicted] = 1.0
    labels = predicted.copy()
    labels[[3, 14]] = [5, 2]
    save_npz(tmp_path / "data/prepared/test.npz", {"images": images, "labels": np.eye(10, dtype=np.float32)[labels]})
    weights = np.zeros((784, 10), np.float32)
    weights[np.arange(10), np.arange(10)] = 10.0
    save_npz(
        tmp_path / "models/weights.npz", {"W0": weights, "b0": np.zeros(10, np.float32), "activation": np.array("relu")}
    )
    write_params(tmp_path, small_params(evaluate={"misclassified_shown": 4}))

    result = run_stage("stages.evaluate", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert metrics["accuracy"] == 0.9 and metrics["errors"] == 2
    assert metrics["per_class"]["3"]["recall"] == 1.0 and metrics["per_class"]["3"]["precision"] == 0.5
    rows = (tmp_path / "plots/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and rows[4] == "5,3" and len(rows) == 21
    assert (tmp_path / "plots/misclassified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_missing_model_is_a_clean_error(tmp_path):
    write_params(tmp_path, small_params())
    result = run_stage("stages.evaluate", tmp_path)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "error: models/weights.npz: file not found (run the stage that makes it: dvc repro)"
    )


@pytest.mark.slow
def test_test_time_augmentation_is_reported_beside_the_plain_network(tmp_path):
    # Every image lights pixel (row 14, column 10); a softmax regression reads it as digit 1 and the pixel
    # one to the right as digit 7. The labels say 7: the plain network gets none right, and averaged with
    # two views shifted one pixel right (two votes for 7 against one for 1) all of them.
    images = np.zeros((20, 784), np.float32)
    images[:, 14 * 28 + 10] = 1.0
    save_npz(
        tmp_path / "data/prepared/test.npz", {"images": images, "labels": np.eye(10, dtype=np.float32)[np.full(20, 7)]}
    )
    weights = np.zeros((784, 10), np.float32)
    weights[14 * 28 + 10, 1] = weights[14 * 28 + 11, 7] = 10.0
    save_npz(
        tmp_path / "models/weights.npz", {"W0": weights, "b0": np.zeros(10, np.float32), "activation": np.array("relu")}
    )
    write_params(tmp_path, small_params(tta={"views": [{"shift": [1.0, 0.0]}, {"shift": [1.0, 0.0]}], "export": False}))

    result = run_stage("stages.evaluate", tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics/evaluate.json").read_text())
    assert metrics["accuracy"] == 1.0 and metrics["errors"] == 0 and metrics["tta_views"] == 2
    assert metrics["plain"]["accuracy"] == 0.0 and metrics["plain"]["errors"] == 20
    assert (tmp_path / "plots/confusion.csv").read_text().splitlines()[1:] == [
        "7,7"
    ] * 20  # the plots show the prediction reported
    assert "test-time augmented over 2 views; plain network: 0.0000" in result.stdout
