"""stages/train.py: outputs, the divergence guard, and SIGKILL-then-resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np

from conftest import ROOT, run_stage, small_params, write_params
from digits.artifacts import load_npz


def _workdir(tmp_path, prepared_dir, name="run", **overrides):
    directory = tmp_path / name
    shutil.copytree(prepared_dir, directory / "data" / "prepared")
    write_params(directory, small_params(**overrides))
    return directory


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_stage_writes_weights_saved_model_curves_and_metrics(tmp_path, prepared_dir):
    workdir = _workdir(tmp_path, prepared_dir)
    result = run_stage("stages.train", workdir)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert metrics["epochs"] == 2 and metrics["parameters"] == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert 0.5 < metrics["val_accuracy"] <= 1
    assert (workdir / "plots/train_history.csv").read_text().splitlines()[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy"
    assert set(load_npz(workdir / "models/weights.npz")) == {"W0", "b0", "W1", "b1", "W2", "b2", "activation"}
    assert (workdir / "models/saved_model/saved_model.pb").is_file()
    assert not [p for p in workdir.rglob(".*tmp*")]  # no temporary left behind


def test_divergence_exits_non_zero_and_writes_no_model(tmp_path, prepared_dir):
    workdir = _workdir(tmp_path, prepared_dir, data={"scale": [0, 255]}, model={"init_stddev": 1.0},
                       train={"loss": "mse", "lr": 1e-3, "lr_schedule": "constant"})
    assert run_stage("stages.prepare", workdir).returncode == 0  # pixels now 0-255
    result = run_stage("stages.train", workdir)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "training diverged" in message and "at epoch 1, step" in message and "data.scale = [0.0, 255.0]" in message
    assert "Traceback" not in result.stderr
    assert not (workdir / "models/weights.npz").exists() and not (workdir / "models/saved_model").exists()


def test_sigkill_after_a_checkpoint_then_rerun_matches_an_uninterrupted_run(tmp_path, prepared_dir):
    overrides = {"train": {"epochs": 8}}
    reference = _workdir(tmp_path, prepared_dir, "reference", **overrides)
    assert run_stage("stages.train", reference).returncode == 0

    killed = _workdir(tmp_path, prepared_dir, "killed", **overrides)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=killed, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("epoch 1/8"):  # printed right after the epoch's checkpoint is in place
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    done = int(load_npz(killed / "models/checkpoint.npz")["epoch"])
    assert 1 <= done < 8 and not (killed / "models/weights.npz").exists()

    result = run_stage("stages.train", killed)
    assert result.returncode == 0, result.stderr
    assert f"resuming from models/checkpoint.npz after epoch {done} of 8" in result.stdout
    assert (killed / "plots/train_history.csv").read_text() == (reference / "plots/train_history.csv").read_text()
    assert _digest(killed / "models/weights.npz") == _digest(reference / "models/weights.npz")
    assert _digest(killed / "metrics/train.json") == _digest(reference / "metrics/train.json")
    assert _digest(killed / "plots/train_history.csv") == _digest(reference / "plots/train_history.csv")


def test_stale_prepared_data_is_refused(tmp_path, prepared_dir):
    workdir = _workdir(tmp_path, prepared_dir)
    from digits.artifacts import save_npz
    arrays = load_npz(workdir / "data/prepared/train.npz")
    save_npz(workdir / "data/prepared/train.npz", {"images": arrays["images"].astype(np.float64), "labels": arrays["labels"]})
    result = run_stage("stages.train", workdir)
    assert result.returncode == 1
    assert "data/prepared/train.npz: images must be a 2-D float32 array (N, pixels), got float64" in result.stderr
    assert not (workdir / "models").exists()
