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
    subprocess.run(
        [sys.executable, "-c", EXPORT, str(directory), str(eager_ops_before), str(weight)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_the_same_weights_export_the_same_bytes_after_any_history(tmp_path):
    fresh = _export(tmp_path / "fresh", eager_ops_before=0)
    assert {"saved_model.pb", "fingerprint.pb", "variables/variables.index"} <= set(fresh)
    assert _export(tmp_path / "busy", eager_ops_before=300) == fresh
    other_weights = _export(tmp_path / "other", eager_ops_before=0, weight=0.25)
    assert other_weights["variables/variables.data-00000-of-00001"] != fresh["variables/variables.data-00000-of-00001"]


# ------------------------------------------------------------ stages/export.py

VIEWS = [{"shift": [1.0, 0.0]}, {"rotation": -8.0}, {"scale": 0.9, "shift": [0.0, -1.0]}]


def _weights_workdir(directory: Path, **tta) -> Path:
    """A work directory holding small random weights (784-32-10) and params with ``tta`` set."""
    import numpy as np

    from conftest import small_params, write_params
    from digits.model import Mlp, save_weights

    model = Mlp([784, 32, 10], activation="relu")
    rng = np.random.default_rng(0)
    model.set_arrays(
        {name: rng.normal(scale=0.1, size=array.shape).astype(np.float32) for name, array in model.get_arrays().items()}
    )
    (directory / "models").mkdir(parents=True)
    save_weights(model, directory / "models/weights.npz")
    params = small_params()
    params["tta"].update(tta)
    write_params(directory, params)
    return directory


def _served(directory: Path, pixels):
    import tensorflow as tf

    serve = tf.saved_model.load(str(directory / "models/saved_model")).signatures["serving_default"]
    return serve(images=tf.constant(pixels))["probabilities"].numpy()


def test_the_exported_model_is_plain_unless_asked_then_it_averages_the_views_evaluate_uses(tmp_path):
    import numpy as np
    import tensorflow as tf

    from conftest import run_stage
    from digits.model import load_weights
    from digits.params import TtaView
    from digits.tta import averaged_probabilities

    pixels = np.random.default_rng(1).integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    scaled = tf.constant(pixels.reshape(20, 784).astype(np.float32) / 255.0)
    served = {}
    for name, tta in {
        "plain": {"views": VIEWS, "export": False},
        "tta": {"views": VIEWS, "export": True},
        "no views": {"views": [], "export": True},
    }.items():
        workdir = _weights_workdir(tmp_path / name, **tta)
        result = run_stage("stages.export", workdir)
        assert result.returncode == 0, result.stderr
        served[name] = _served(workdir, pixels)
    model = load_weights(tmp_path / "plain/models/weights.npz")
    np.testing.assert_allclose(served["plain"], tf.nn.softmax(model(scaled)).numpy(), atol=1e-6)
    np.testing.assert_array_equal(served["no views"], served["plain"])
    expected = averaged_probabilities(model, scaled, [TtaView(**view) for view in VIEWS], background=0.0).numpy()
    np.testing.assert_allclose(served["tta"], expected, atol=1e-6)
    assert np.abs(served["tta"] - served["plain"]).max() > 1e-3
    assert "averaging over the image and 3 test-time views" in run_stage("stages.export", tmp_path / "tta").stdout


def test_a_full_disk_fails_the_export_in_one_line_with_nothing_half_written(tmp_path, small_disk):
    from conftest import run_stage

    workdir = _weights_workdir(tmp_path / "run")
    weights = (workdir / "models/weights.npz").read_bytes()
    (workdir / "models/weights.npz").unlink()
    models = small_disk(
        workdir / "models", size=len(weights) + 64 * 1024
    )  # the weights fit, the SavedModel's copy of them does not
    (models / "weights.npz").write_bytes(weights)
    result = run_stage("stages.export", workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(
        "error: models/saved_model: cannot write it (no space left on the device: free some and run again)"
    )
    assert sorted(path.name for path in models.iterdir()) == ["weights.npz"]  # nothing half-written beside the weights
