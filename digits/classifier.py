"""The exported SavedModel as a plain function, for the programs that use the model instead of training it.

stages/predict.py and stages/serve.py load models/saved_model, the export
stage's output, through here: TensorFlow and the SavedModel, never the
training code, so what they answer is what a user of the SavedModel gets.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

from digits.runtime import tf

import numpy as np
import yaml

from digits.errors import PipelineError
from digits.paths import SAVED_MODEL, WEIGHTS

Classifier = Callable[[np.ndarray], np.ndarray]  # uint8 (N, 28, 28) -> float32 (N, 10) class probabilities
TEST_METRICS = Path("metrics/evaluate.json")  # evaluate's output, read for the model's test accuracy
LOCK_FILE = Path("dvc.lock")


def load_classifier(path: Path) -> Classifier:
    """The SavedModel's serving function, taking and giving numpy arrays."""
    if not (path / "saved_model.pb").is_file():
        raise PipelineError(f"{path}: no SavedModel here (run `dvc repro` to train and export one)")
    try:
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    except Exception as error:
        reason = (getattr(error, "message", None) or str(error) or type(error).__name__).splitlines()[0]
        restore = (
            "`dvc checkout models/saved_model` restores the committed one" if path == SAVED_MODEL else "export it again"
        )
        raise PipelineError(f"{path}: a damaged SavedModel ({type(error).__name__}: {reason}); {restore}") from None

    def classify(images: np.ndarray) -> np.ndarray:
        return serve(images=tf.constant(images, dtype=tf.uint8))["probabilities"].numpy()

    return classify


def reading(probabilities: np.ndarray) -> dict[str, object]:
    """What the model reads in one image, as ``stages.predict --json`` prints it: the digit and its probability."""
    return {"digit": int(probabilities.argmax()), "probability": round(float(probabilities.max()), 6)}


def recorded_identity(root: Path = Path(".")) -> dict[str, object]:
    """What the pipeline recorded about the model in ``root``: the weights' md5 as dvc.lock has it, and the test
    accuracy of metrics/evaluate.json (None where a file is missing or does not say).

    Both are the record of the last `dvc repro` or `dvc exp run` in that
    workspace, which is what a person who just trained a model wants to see
    next to it.
    """
    identity: dict[str, object] = {"weights_md5": None, "test_accuracy": None}
    try:
        lock = yaml.safe_load((root / LOCK_FILE).read_text())
        outs = lock["stages"]["train"]["outs"]
        identity["weights_md5"] = next(out["md5"] for out in outs if out["path"] == WEIGHTS.as_posix())
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration):
        pass
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        identity["test_accuracy"] = float(json.loads((root / TEST_METRICS).read_text())["accuracy"])
    return identity
