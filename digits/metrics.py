"""Classification metrics shared by evaluate and the Keras baseline.

Both stages call ``classification_metrics`` on their logits, so
metrics/evaluate.json and metrics/baseline.json have the same keys and
``dvc metrics show`` lines them up. ``loss`` is always the mean softmax
cross-entropy, whatever loss the model was trained with, so runs trained
with mse and cross_entropy stay comparable.

The exponentials and logarithms run XLA-compiled: numpy's ``exp`` and
``log`` pick SIMD code by CPU (AVX-512 or AVX2) and round differently, and
the metrics and plots must have the same bits on every machine.
"""

from __future__ import annotations

from digits.runtime import tf

import numpy as np

from digits import reductions
from digits.mnist import NUM_CLASSES

_softmax = tf.function(reductions.softmax, jit_compile=True)
_log_softmax = tf.function(reductions.log_softmax, jit_compile=True)


_log = tf.function(
    lambda probabilities: tf.math.log(tf.maximum(probabilities, np.finfo(np.float32).tiny)), jit_compile=True
)


def softmax(logits: np.ndarray) -> np.ndarray:
    return _softmax(np.asarray(logits, np.float32)).numpy()


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """log(p), floored at the smallest float32: logits whose softmax is ``probabilities``, for
    ``classification_metrics``.
    """
    return _log(np.asarray(probabilities, np.float32)).numpy()


def cross_entropy(labels: np.ndarray, logits: np.ndarray) -> float:
    """Mean softmax cross-entropy of integer labels (N,) under logits (N, C)."""
    log_probs = _log_softmax(np.asarray(logits, np.float32)).numpy()
    return float(-log_probs[np.arange(len(labels)), labels].astype(np.float64).mean())


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """counts[actual, predicted]."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (labels, predictions), 1)
    return counts


def classification_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    """accuracy, loss, errors, and per-class accuracy/precision/recall.

    Per-class accuracy is the fraction of that digit's images classified
    correctly (the same number as recall); precision is the fraction of
    predictions of that digit that were right (0 if it was never predicted).
    """
    labels = np.asarray(labels, dtype=np.int64)
    predictions = np.argmax(logits, axis=1).astype(np.int64)
    counts = confusion_matrix(labels, predictions, num_classes=logits.shape[1])
    correct = np.diag(counts)
    actual_totals, predicted_totals = counts.sum(axis=1), counts.sum(axis=0)
    per_class = {}
    for digit in range(logits.shape[1]):
        recall = correct[digit] / actual_totals[digit] if actual_totals[digit] else 0.0
        precision = correct[digit] / predicted_totals[digit] if predicted_totals[digit] else 0.0
        per_class[str(digit)] = {
            "accuracy": round(float(recall), 6),
            "precision": round(float(precision), 6),
            "recall": round(float(recall), 6),
        }
    return {
        "accuracy": float(correct.sum() / len(labels)),
        "loss": round(cross_entropy(labels, logits), 6),
        "errors": int(len(labels) - correct.sum()),
        "examples": len(labels),
        "per_class": per_class,
    }
