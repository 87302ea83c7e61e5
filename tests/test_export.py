"""digits/export.py: the SavedModel's bytes are a function of the weights alone, not of what the process did before."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # runs stages or other processes: see pytest.ini

EXPORT = """
import sys
import numpy as np
from digits.runtime import tf
from digits.export import export_saved_model
from digits.model import Mlp

model = Mlp([784, 16, 10], activation="relu")
model.weights[0].assign(np.full([784, 16], float(sys.argv[3]), np.float32))
counter = tf.Variable(0.0)
for _ in range(int(sys.argv[2])):  # eager work before the export, as reading a checkpoint or training longer does
    counter.assign_add(1.0)
export_saved_model(model, sys.argv[1], scale=[0.0, 1.0])
"""


def _export(directory: Path, *, eager_ops_before: int, weight: float = 0.5) -> dict[str, str]:
    subprocess.run([sys.executable, "-c", EXPORT, str(directory), str(eager_ops_before), str(weight)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def test_the_same_weights_export_the_same_bytes_after_any_history(tmp_path):
    fresh = _export(tmp_path / "fresh", eager_ops_before=0)
    assert {"saved_model.pb", "fingerprint.pb", "variables/variables.index"} <= set(fresh)
    assert _export(tmp_path / "busy", eager_ops_before=300) == fresh
    other_weights = _export(tmp_path / "other", eager_ops_before=0, weight=0.25)
    assert other_weights["variables/variables.data-00000-of-00001"] != fresh["variables/variables.data-00000-of-00001"]
