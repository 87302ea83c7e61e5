"""digits/runtime.py: stages start quietly, real errors still show, the switch brings TensorFlow's logs back,
and the project's XLA flags never override the user's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from digits.runtime import (
    SAME_BITS_SWITCH,
    SAME_BITS_XLA_FLAGS,
    START_UP_NOISE,
    configure_xla_cpu,
    start_up_noise_removed,
)

import pytest

from conftest import run_stage, small_params, write_params

ABSL_LINE = re.compile(r"^[IWEF]\d{4} ", re.M)


def _stage(module: str, cwd, **env_changes) -> subprocess.CompletedProcess:
    """Run a stage with the environment a user has: no TF_CPP_MIN_LOG_LEVEL of ours."""
    drop = tuple(name for name in ("TF_CPP_MIN_LOG_LEVEL", "DIGITS_TF_LOGS") if name not in env_changes)
    return run_stage(module, cwd, env=env_changes, drop=drop)


def _train_workdir(tmp_path, prepared_dir):
    shutil.copytree(prepared_dir, tmp_path / "data" / "prepared")
    write_params(tmp_path, small_params(train={"epochs": 1}))
    return tmp_path


@pytest.mark.slow
def test_a_stage_writes_nothing_but_its_own_lines_to_stderr(tmp_path, prepared_dir):
    workdir = _train_workdir(tmp_path, prepared_dir)
    trained = _stage("stages.train", workdir)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == ""
    assert "epoch 1/1" in trained.stdout

    (workdir / "models" / "weights.npz").unlink()
    failed = _stage("stages.evaluate", workdir)
    assert failed.returncode == 1
    assert failed.stderr.splitlines() == [failed.stderr.strip()] and failed.stderr.startswith("error: ")
    assert "weights.npz" in failed.stderr


@pytest.mark.slow
def test_the_switch_turns_tensorflow_logging_back_on(tmp_path, prepared_dir):
    workdir = _train_workdir(tmp_path, prepared_dir)
    trained = _stage("stages.train", workdir, DIGITS_TF_LOGS="1")
    assert trained.returncode == 0, trained.stderr
    assert ABSL_LINE.search(trained.stderr), trained.stderr  # TensorFlow's own log lines, unfiltered


def test_start_up_filter_drops_tensorflow_noise_and_keeps_everything_else(capfd):
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795567709.877034    2644 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
        "will not be used.",
        "E0000 00:00:1795567714.463710    2644 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
        "Failed call to cuInit: UNKNOWN ERROR (303)",
    ]
    kept = [
        "E0000 00:00:1795567714.463710    2644 cuda_dnn.cc:10] Could not load cuDNN: a real problem on a GPU machine",
        "UserWarning: something a user should read",
    ]
    with start_up_noise_removed():
        os.write(2, ("\n".join(noise + kept[:1]) + "\n").encode())  # C++ writes straight to file descriptor 2
        print(kept[1], file=sys.stderr)
    assert sorted(capfd.readouterr().err.splitlines()) == sorted(
        kept
    )  # (pytest routes sys.stderr around file descriptor 2)
    assert all(START_UP_NOISE.match(line) for line in noise) and not any(START_UP_NOISE.match(line) for line in kept)


def test_xla_flags_are_added_but_never_override_the_users(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(SAME_BITS_SWITCH, raising=False)
    configure_xla_cpu()
    added = os.environ["XLA_FLAGS"]
    assert added.split() == [f"{flag}={value}" for flag, value in SAME_BITS_XLA_FLAGS.items()]
    configure_xla_cpu()  # idempotent
    assert os.environ["XLA_FLAGS"] == added

    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true --xla_dump_to=/tmp/x")
    configure_xla_cpu()
    assert os.environ["XLA_FLAGS"].startswith("--xla_cpu_multi_thread_eigen=true --xla_dump_to=/tmp/x ")
    assert (
        "--xla_cpu_multi_thread_eigen=false" not in os.environ["XLA_FLAGS"]
        and "--xla_cpu_prefer_vector_width=512" in os.environ["XLA_FLAGS"]
    )


def test_the_switch_for_cpu_specific_speed_sets_only_the_old_flag(monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setenv(SAME_BITS_SWITCH, "0")
    configure_xla_cpu()
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
