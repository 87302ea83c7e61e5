"""digits/classifier.py: the SavedModel as a numpy function, and the model's identity as the pipeline recorded it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import RAW_MNIST, ROOT
from digits.classifier import load_classifier, recorded_identity
from digits.errors import PipelineError
from digits.idx import load_raw_dataset


def test_the_classifier_takes_uint8_images_and_gives_probabilities(slice_saved_model):
    images = load_raw_dataset(RAW_MNIST)["test_images"][:50]
    probabilities = load_classifier(slice_saved_model)(images)
    assert probabilities.shape == (50, 10) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_folder_without_a_saved_model_is_one_error(tmp_path):
    with pytest.raises(PipelineError, match=r"no SavedModel here \(run `dvc repro` to train and export one\)"):
        load_classifier(tmp_path)


def test_the_identity_is_the_weights_md5_in_dvc_lock_and_the_test_accuracy(tmp_path):
    shutil.copy(ROOT / "dvc.lock", tmp_path / "dvc.lock")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"accuracy": 0.9731, "errors": 269}))
    identity = recorded_identity(tmp_path)
    lock = (ROOT / "dvc.lock").read_text()
    assert identity["test_accuracy"] == 0.9731
    md5 = identity["weights_md5"]
    assert len(md5) == 32 and f"path: models/weights.npz\n      hash: md5\n      md5: {md5}" in lock


@pytest.mark.parametrize("broken", ["missing", "not yaml", "no train stage"])
def test_a_missing_or_broken_record_leaves_the_identity_blank(tmp_path, broken):
    if broken == "not yaml":
        (tmp_path / "dvc.lock").write_text("stages: [unclosed")
    elif broken == "no train stage":
        (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  prepare:\n    cmd: x\n")
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/evaluate.json").write_text("{not json")
    assert recorded_identity(tmp_path) == {"weights_md5": None, "test_accuracy": None}
