"""The real `dvc repro` in a temporary repository, when something goes wrong: a params typo, a size the data cannot
satisfy, a stage that fails after DVC removed its outputs, and dvc itself terminated mid-stage."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import DVC, command_env, run_command


@pytest.mark.slow
def test_params_typo_fails_repro_even_when_no_tracked_param_changed(repo):
    original = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(original + "trian:\n  epochs: 3\n")
    try:
        result = run_command([DVC, "repro"], repo, check=False)
        assert result.returncode != 0
        assert "trian: unknown section" in result.stderr + result.stdout
    finally:
        (repo / "params.yaml").write_text(original)


@pytest.mark.slow
def test_a_size_the_data_cannot_satisfy_fails_before_dvc_removes_the_prepared_data(repo):
    original = (repo / "params.yaml").read_text()
    prepared = {path.name: path.read_bytes() for path in (repo / "data" / "prepared").iterdir()}
    params = yaml.safe_load(original)
    params["data"]["val_size"] = 60000
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = run_command([DVC, "repro"], repo, check=False)
        assert result.returncode != 0
        assert (
            "data.val_size = 60000: must be at most 59999" in result.stderr
            and "60,000 training images" in result.stderr
        )
        assert {path.name: path.read_bytes() for path in (repo / "data" / "prepared").iterdir()} == prepared
    finally:
        (repo / "params.yaml").write_text(original)


def _set_params(repo: Path, **sections: dict) -> str:
    """Change params.yaml in ``repo``; returns the original text to put back."""
    original = (repo / "params.yaml").read_text()
    params = yaml.safe_load(original)
    for section, values in sections.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return original


def _back_to_the_commit(repo: Path, original_params: str) -> None:
    (repo / "params.yaml").write_text(original_params)
    run_command(["git", "checkout", "--", "."], repo)
    run_command([DVC, "checkout", "--force"], repo)
    assert json.loads(run_command([DVC, "status", "--json"], repo).stdout) == {}


@pytest.mark.slow
def test_the_restore_hint_of_a_failed_stage_brings_back_every_removed_output(repo):
    """train diverges under `dvc repro` after DVC removed its outputs; the commands the error names, run as printed,
    restore them.
    """
    outputs = ["models/weights.npz", "metrics/train.json", "plots/train_history.csv", "plots/augmented.png"]
    before = {name: (repo / name).read_bytes() for name in outputs}
    original = _set_params(repo, model={"init_stddev": 5.0}, train={"lr": 1000.0, "lr_schedule": "constant"})
    try:
        result = run_command([DVC, "repro"], repo, check=False)
        assert result.returncode != 0 and "training diverged" in result.stderr
        assert not any((repo / name).exists() for name in outputs)  # DVC removed them before running the stage
        hint = result.stderr[result.stderr.index("to get them back:") :]
        commands = re.findall(r"`([^`]+)`", hint)
        assert commands == [
            "git checkout -- plots/train_history.csv plots/augmented.png metrics/train.json",
            "dvc checkout train",
        ], hint
        for command in commands:
            run_command(command.replace("dvc ", f"{DVC} ", 1).split(), repo)
        assert {name: (repo / name).read_bytes() for name in outputs} == before
    finally:
        _back_to_the_commit(repo, original)


@pytest.mark.slow
def test_a_stage_stops_when_its_dvc_is_terminated_and_a_rerun_resumes_to_the_same_bits(repo):
    """SIGTERM to dvc alone (as a job scheduler sends): DVC dies without passing it on; the stage notices and stops."""
    original = _set_params(repo, train={"epochs": 100})
    env = command_env(PYTHONUNBUFFERED="1")
    try:
        dvc = subprocess.Popen(
            [DVC, "repro", "train"], cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        lines = []
        for line in dvc.stdout:
            lines.append(line)
            if line.startswith("epoch 3/100"):
                break
        dvc.terminate()
        terminated = time.monotonic()
        assert dvc.wait(timeout=10) != 0
        rest = dvc.stdout.read()  # EOF: the stage, which shares the pipe, has ended too
        stopped_after = time.monotonic() - terminated
        assert stopped_after < 15, stopped_after
        assert "stopping: dvc (pid" in rest and "interrupted: no output was half-written" in rest, rest
        assert "epoch 100/100" not in rest and "train: 100 epochs" not in rest, rest  # it stopped, not finished
        assert not (repo / "models/weights.npz").exists()
        assert (
            json.loads((repo / "metrics/train.json").read_text())["epochs_run"] < 100
        )  # the live metrics of the epochs done

        resumed = run_command([DVC, "repro", "train"], repo)
        assert "resuming from models/checkpoint.npz after epoch" in resumed.stdout
        resumed_weights = (repo / "models/weights.npz").read_bytes()
        run_command([DVC, "repro", "-f", "train"], repo)  # the same 100 epochs, uninterrupted
        assert (repo / "models/weights.npz").read_bytes() == resumed_weights
    finally:
        _back_to_the_commit(repo, original)
