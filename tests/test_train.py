"""stages/train.py: outputs, the divergence guard, SIGKILL-then-resume, and the distributed modes
(mirrored on two logical CPUs; a two-worker cluster on localhost)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, run_stage, stage_workdir
from digits.artifacts import load_npz
from digits.scratch import EVERY_AUGMENTATION, EVERY_TRAINING_FEATURE, stage_command, stage_env


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_stage_writes_weights_curves_and_metrics(tmp_path, prepared_dir):
    workdir = stage_workdir(tmp_path, prepared_dir)
    result = run_stage("stages.train", workdir)
    assert result.returncode == 0, result.stderr
    assert "epoch 2/2" in result.stdout
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    assert metrics["epochs"] == 2 and metrics["parameters"] == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert 0.5 < metrics["val_accuracy"] <= 1
    assert (workdir / "plots/train_history.csv").read_text().splitlines()[
        0
    ] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy"
    assert set(load_npz(workdir / "models/weights.npz")) == {"W0", "b0", "W1", "b1", "W2", "b2", "activation"}
    assert not [p for p in workdir.rglob(".*tmp*")]  # no temporary left behind


@pytest.mark.slow
def test_divergence_exits_non_zero_and_writes_no_model(tmp_path, prepared_dir):
    workdir = stage_workdir(
        tmp_path,
        prepared_dir,
        data={"scale": [0, 255]},
        model={"init_stddev": 1.0},
        train={"loss": "mse", "lr": 1e-3, "lr_schedule": "constant"},
    )
    assert run_stage("stages.prepare", workdir).returncode == 0  # pixels now 0-255
    result = run_stage("stages.train", workdir)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "training diverged" in message and "at epoch 1, step" in message and "data.scale = [0.0, 255.0]" in message
    assert "Traceback" not in result.stderr
    assert not (workdir / "models/weights.npz").exists() and not (workdir / "models/saved_model").exists()


RECIPE = {  # every regularisation and augmentation feature on, as the best recipe has them
    "model": {"init": "he"},
    "train": EVERY_TRAINING_FEATURE,
    "augment": EVERY_AUGMENTATION,
}


@pytest.mark.slow
def test_the_recipe_stage_shows_its_augmentation_keeps_the_best_epoch_and_exports_without_dropout(
    tmp_path, prepared_dir
):
    workdir = stage_workdir(tmp_path, prepared_dir, **{**RECIPE, "train": {**RECIPE["train"], "epochs": 4}})
    result = run_stage("stages.train", workdir)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((workdir / "metrics/train.json").read_text())
    history = np.loadtxt(workdir / "plots/train_history.csv", delimiter=",", skiprows=1)
    assert metrics["epochs_run"] == 4 and metrics["kept_epoch"] == metrics["best_epoch"] == int(
        history[history[:, 4].argmax(), 0]
    )
    assert metrics["best_val_accuracy"] == history[:, 4].max() > 0.7
    kept = history[metrics["kept_epoch"] - 1]  # metrics/train.json describes the epoch whose weights models/ holds
    assert [metrics[key] for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")] == kept[1:].tolist()
    grid = Image.open(workdir / "plots/augmented.png")
    assert grid.size == (8 * 84, 16 + 10 * 84)  # 10 digits: the original, then epochs 1 to 7
    cells = np.asarray(grid)[16:, :].reshape(10, 84, 8, 84).transpose(0, 2, 1, 3)
    assert not np.array_equal(cells[:, 0], cells[:, 1]) and not np.array_equal(cells[:, 1], cells[:, 2])

    # No dropout at inference: the exported SavedModel gives exactly what the saved weights give, every time.
    assert run_stage("stages.export", workdir).returncode == 0
    import tensorflow as tf

    from digits.model import load_weights

    images = np.load(workdir / "data/prepared/val.npz")["images"][:50]
    served = tf.saved_model.load(str(workdir / "models/saved_model")).signatures["serving_default"]
    pixels = tf.constant(np.round(images.reshape(-1, 28, 28) * 255).astype(np.uint8))
    first, second = served(images=pixels)["probabilities"].numpy(), served(images=pixels)["probabilities"].numpy()
    model = load_weights(workdir / "models/weights.npz")
    expected = tf.nn.softmax(model(tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, 784]))).numpy()
    assert np.array_equal(first, second)
    np.testing.assert_allclose(first, expected, atol=1e-6)


@pytest.mark.slow
def test_shipped_params_draw_the_digits_unchanged(tmp_path, prepared_dir):
    workdir = stage_workdir(tmp_path, prepared_dir, train={"epochs": 1})
    assert run_stage("stages.train", workdir).returncode == 0
    grid = Image.open(workdir / "plots/augmented.png")
    assert (
        grid.size == (84, 16 + 10 * 84) and np.asarray(grid)[16:].min() < 100
    )  # the originals alone, no epoch columns


def _signal_after_the_first_epoch(
    workdir: Path, *arguments: str, epochs: int, signal_number: int, stderr=subprocess.DEVNULL
) -> subprocess.Popen:
    """Start the train stage in ``workdir`` and send it ``signal_number`` the moment it prints epoch 1's line, which
    it prints right after the epoch's checkpoint is in place."""
    process = subprocess.Popen(
        stage_command("stages.train", *arguments),
        cwd=workdir,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    for line in process.stdout:
        if line.startswith(f"epoch 1/{epochs}"):
            process.send_signal(signal_number)
            break
    return process


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides, member",
    [
        ({"train": {"epochs": 8}}, 0),
        ({**RECIPE, "train": {**RECIPE["train"], "epochs": 8}}, 0),
        ({**RECIPE, "train": {**RECIPE["train"], "epochs": 8}}, 2),  # a committee member, writing under members/2/
    ],
    ids=["default", "recipe", "recipe-member"],
)
def test_sigkill_after_a_checkpoint_then_rerun_matches_an_uninterrupted_run(tmp_path, prepared_dir, overrides, member):
    arguments = ("--member", str(member))
    reference = stage_workdir(tmp_path, prepared_dir, "reference", **overrides)
    assert run_stage("stages.train", reference, *arguments).returncode == 0

    killed = stage_workdir(tmp_path, prepared_dir, "killed", **overrides)
    process = _signal_after_the_first_epoch(killed, *arguments, epochs=8, signal_number=signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    out = Path(".") if member == 0 else Path(f"members/{member}")
    killed_out, reference_out = killed / out, reference / out
    done = int(load_npz(killed_out / "models/checkpoint.npz")["epoch"])
    assert 1 <= done < 8 and not (killed_out / "models/weights.npz").exists()
    # the live metrics and curves of the epochs done so far (written right after each checkpoint)
    live = json.loads((killed_out / "metrics/train.json").read_text())
    assert live["epochs"] == 8 and live["epochs_run"] in (done - 1, done) and live["epochs_run"] >= 1
    assert len((killed_out / "plots/train_history.csv").read_text().splitlines()) == 1 + live["epochs_run"]

    result = run_stage("stages.train", killed, *arguments)
    assert result.returncode == 0, result.stderr
    assert f"resuming from {out / 'models/checkpoint.npz'} after epoch {done} of 8" in result.stdout
    for name in ("models/weights.npz", "metrics/train.json", "plots/train_history.csv"):
        assert _digest(killed_out / name) == _digest(reference_out / name), name
    if member:
        assert not (killed / "models").exists() and "committee member 2" in result.stdout


@pytest.mark.slow
def test_stale_prepared_data_is_refused(tmp_path, prepared_dir):
    workdir = stage_workdir(tmp_path, prepared_dir)
    from digits.artifacts import save_npz

    arrays = load_npz(workdir / "data/prepared/train.npz")
    save_npz(
        workdir / "data/prepared/train.npz", {"images": arrays["images"].astype(np.float64), "labels": arrays["labels"]}
    )
    result = run_stage("stages.train", workdir)
    assert result.returncode == 1
    assert (
        "data/prepared/train.npz: array 'images' is float64 (2000, 784), expected float32 (N, pixels)" in result.stderr
    )
    assert "dvc checkout" not in result.stderr  # run by hand: nothing was removed
    assert not (workdir / "models").exists()

    under_dvc = run_stage(
        "stages.train", workdir, env={"DVC_STAGE": "train", "DVC_ROOT": str(ROOT)}
    )  # as dvc repro runs it
    assert under_dvc.returncode == 1 and len(under_dvc.stderr.strip().splitlines()) == 1
    assert under_dvc.stderr.strip().endswith(
        "(DVC removed the previous outputs of stage 'train' before running it; to get them back: "
        "`git checkout -- plots/train_history.csv plots/augmented.png metrics/train.json` (kept in git) "
        "and `dvc checkout train` (kept in DVC's cache))"
    )


@pytest.mark.slow
def test_every_thread_count_gives_the_same_bits(tmp_path, prepared_dir):
    """The default net and batch, whose first-layer weight gradient (784 x 128 x 256) XLA's default
    splits over the threads; with digits.runtime's flags every matmul sums in one fixed order."""
    digests = {}
    for threads in ("1", "2", "3"):
        workdir = stage_workdir(
            tmp_path, prepared_dir, f"threads{threads}", model={"hidden": [256, 128]}, train={"batch_size": 128}
        )
        result = run_stage("stages.train", workdir, env={"TF_NUM_INTRAOP_THREADS": threads})
        assert result.returncode == 0, result.stderr
        digests[threads] = (_digest(workdir / "models/weights.npz"), _digest(workdir / "plots/train_history.csv"))
    assert len(set(digests.values())) == 1, digests


# ---------------------------------------------------------------- outputs that cannot be written


def _one_error_line(result) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_an_output_that_cannot_be_written_is_refused_before_training(tmp_path, prepared_dir):
    workdir = stage_workdir(tmp_path, prepared_dir)
    (workdir / "models/checkpoint.npz").mkdir(parents=True)
    result = run_stage("stages.train", workdir)
    assert _one_error_line(result) == (
        "error: models/checkpoint.npz: cannot write it (a directory is in the way); "
        "the previous version, if any, is untouched"
    )
    assert "epoch 1/" not in result.stdout


@pytest.mark.slow
def test_a_read_only_output_directory_is_refused_before_training(tmp_path, prepared_dir, small_disk):
    workdir = stage_workdir(tmp_path, prepared_dir)
    small_disk(workdir / "models", size=1 << 20, read_only=True)
    result = run_stage("stages.train", workdir)
    assert _one_error_line(result).startswith(
        "error: models/checkpoint.npz: cannot write it (the file system is read-only)"
    )
    assert "epoch 1/" not in result.stdout


@pytest.mark.slow
def test_a_full_disk_is_one_line_naming_the_output_with_nothing_half_written(tmp_path, prepared_dir, small_disk):
    """The first checkpoint (213 kB) fits on 300 kB, the second beside it does not. (The SavedModel's full disk:
    tests/test_export.py.)
    """
    workdir = stage_workdir(tmp_path, prepared_dir)
    models = small_disk(workdir / "models", size=300 * 1024)
    result = run_stage("stages.train", workdir)
    assert _one_error_line(result).startswith(
        "error: models/checkpoint.npz: cannot write it (no space left on the device: free some and run again)"
    )
    assert not [
        path for path in models.rglob("*") if ".tmp" in path.name or ".old" in path.name
    ]  # no temporary left behind
    assert not (workdir / "models/weights.npz").exists()
    done = int(
        load_npz(models / "checkpoint.npz")["epoch"]
    )  # what was written before is whole: a rerun resumes from it
    assert done >= 1 and json.loads((workdir / "metrics/train.json").read_text())["epochs_run"] == done


def test_live_metrics_and_the_editors_signal_after_an_epoch(tmp_path, monkeypatch):
    """What train writes after each epoch: the metrics and curves so far, and (under DVC) dvclive's signal file for VS
    Code.
    """
    from digits.checkpoints import EpochRecord, History
    from stages.train import HISTORY, METRICS, write_metrics_and_history

    history = History([EpochRecord(1, 0.9, 0.7, 0.8, 0.75), EpochRecord(2, 0.5, 0.85, 0.6, 0.8)], kept_epoch=2)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    write_metrics_and_history(tmp_path, history=history, epochs=10, parameters=123)
    metrics = json.loads((tmp_path / METRICS).read_text())
    assert (metrics["epochs"], metrics["epochs_run"], metrics["kept_epoch"], metrics["val_accuracy"]) == (10, 2, 2, 0.8)
    assert (tmp_path / HISTORY).read_text().splitlines() == [
        "epoch,train_loss,train_accuracy,val_loss,val_accuracy",
        "1,0.9,0.7,0.8,0.75",
        "2,0.5,0.85,0.6,0.8",
    ]
    signal = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED"
    assert not signal.exists()  # outside DVC: no signal

    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))
    write_metrics_and_history(tmp_path, history=history, epochs=10, parameters=123)
    assert json.loads(signal.read_text()) == {"pid": os.getpid(), "step": 2}


@pytest.mark.slow
def test_ctrl_c_mid_run_exits_130_with_nothing_half_written_and_the_rerun_resumes(tmp_path, prepared_dir):
    """docs/faults.md's Ctrl-C row: the terminal sends SIGINT to the stage; it stops at once, exit 130, one line."""
    workdir = stage_workdir(tmp_path, prepared_dir, train={"epochs": 6})
    process = _signal_after_the_first_epoch(workdir, epochs=6, signal_number=signal.SIGINT, stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted: no output was half-written; run again to resume"
    assert "Traceback" not in stderr
    assert not (workdir / "models/weights.npz").exists()
    assert not [path for path in workdir.rglob("*") if ".tmp" in path.name]  # no temporary left behind
    done = int(load_npz(workdir / "models/checkpoint.npz")["epoch"])
    assert 1 <= done < 6
    rerun = run_stage("stages.train", workdir)
    assert rerun.returncode == 0 and f"after epoch {done} of 6" in rerun.stdout, rerun.stderr


@pytest.mark.slow
def test_a_network_too_large_for_the_machine_is_refused_before_anything_is_written(tmp_path, prepared_dir):
    workdir = stage_workdir(tmp_path, prepared_dir, model={"hidden": [100000, 100000]})
    assert run_stage("stages.check_params", workdir).returncode == 0  # the schema is the same on every machine
    for stage in ("stages.train", "stages.baseline"):
        result = run_stage(stage, workdir)
        assert _one_error_line(result).startswith("error: model.hidden = [100000, 100000]: training this network needs")
    assert sorted(path.name for path in workdir.iterdir()) == ["data", "params.yaml"]
