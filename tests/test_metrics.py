"""digits/metrics.py: accuracy, errors, per-class figures, the confusion matrix and the loss on cases whose answer is
known.
"""

from __future__ import annotations

import math

import numpy as np

from digits.metrics import classification_metrics, confusion_matrix, cross_entropy, log_probabilities, softmax


def test_metrics_of_a_hand_made_case():
    labels = np.array([0, 0, 1, 1, 2])
    logits = np.eye(3)[[0, 1, 1, 1, 0]] * 5.0  # predictions 0 1 1 1 0
    metrics = classification_metrics(labels, logits)
    assert metrics["accuracy"] == 0.6 and metrics["errors"] == 2 and metrics["examples"] == 5
    assert metrics["per_class"]["0"] == {"accuracy": 0.5, "precision": 0.5, "recall": 0.5}
    assert metrics["per_class"]["1"] == {"accuracy": 1.0, "precision": round(2 / 3, 6), "recall": 1.0}
    assert metrics["per_class"]["2"] == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0}
    assert confusion_matrix(labels, logits.argmax(1), num_classes=3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    np.testing.assert_allclose(cross_entropy(np.array([1]), np.zeros((1, 4))), np.log(4))


def test_softmax_of_huge_logits_is_finite_and_sums_to_one():
    probabilities = softmax(np.array([[1000.0, 0.0, -1000.0], [3.0, 3.0, 3.0]], np.float32))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities[1], 1 / 3, rtol=1e-6)
    assert probabilities[0, 0] == 1.0


def test_the_loss_is_the_mean_negative_log_probability_of_the_true_class():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    expected = -(math.log(0.25) + math.log(0.8)) / 2  # labels 1 and 1
    assert math.isclose(cross_entropy(np.array([1, 1]), logits), expected, rel_tol=1e-6)
    np.testing.assert_allclose(log_probabilities(np.array([[0.5, 0.5]])), np.log([[0.5, 0.5]]))


def test_the_confusion_matrix_counts_every_example_once():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 10, 500), rng.integers(0, 10, 500)
    matrix = confusion_matrix(labels, predictions)
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert np.array_equal(matrix.sum(axis=1), np.bincount(labels, minlength=10))
    assert np.trace(matrix) == int((labels == predictions).sum())
