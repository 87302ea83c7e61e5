"""digits/scratch.py: a scratch folder's params are the shipped ones with the changes, read as `dvc exp run -S` reads
them, valid, and usable from any folder; a failing stage names itself."""

from __future__ import annotations

import pytest
import yaml

from digits.params import load_params
from digits.scratch import RAW_MNIST, run_stage, scratch_workspace, shipped_params, stage_env, with_changes


def test_overrides_are_read_as_dvc_reads_them_and_sections_change_key_by_key():
    overrides = ["train.weight_decay=2e-05", "model.hidden=[16,8]"]
    params = with_changes(shipped_params(), {"train": {"epochs": 3}}, overrides)
    assert params["train"]["weight_decay"] == 2e-05 and isinstance(params["train"]["weight_decay"], float)
    assert params["model"]["hidden"] == [16, 8] and params["train"]["epochs"] == 3
    assert params["train"]["lr"] == shipped_params()["train"]["lr"]  # the rest of the section is kept
    assert shipped_params()["train"]["epochs"] != 3  # the shipped params are not changed in place


def test_a_scratch_workspace_holds_valid_params_that_find_the_shipped_mnist_and_goes_away():
    with scratch_workspace({"data": {"train_size": 100}}, ["train.epochs=1"]) as folder:
        params = load_params(folder / "params.yaml")
        assert params.data.train_size == 100 and params.train.epochs == 1
        assert params.data.raw_dir == str(RAW_MNIST) and RAW_MNIST.is_dir()
        assert list(yaml.safe_load((folder / "params.yaml").read_text())) == list(shipped_params())  # sections in order
    assert not folder.exists()


def test_a_kept_workspace_stays(tmp_path):
    with scratch_workspace(keep=tmp_path / "run0") as folder:
        assert folder == tmp_path / "run0"
    assert (tmp_path / "run0" / "params.yaml").is_file()


def test_the_stage_environment_adds_drops_and_makes_the_project_importable(monkeypatch):
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "7")
    env = stage_env({"DIGITS_TF_LOGS": "1"}, drop=["TF_NUM_INTRAOP_THREADS"])
    assert env["DIGITS_TF_LOGS"] == "1" and "TF_NUM_INTRAOP_THREADS" not in env
    assert env["PYTHONPATH"] == str(RAW_MNIST.parents[2]) and env["TF_CPP_MIN_LOG_LEVEL"] == "2"


def test_a_failing_module_is_named_with_its_stderr(tmp_path):
    with pytest.raises(RuntimeError, match=r"digits\.no_such_module failed in .* \(exit 1\):\n.*No module named"):
        run_stage("digits.no_such_module", tmp_path, check=True)
