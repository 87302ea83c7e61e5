"""stages/check_params.py: sizes the raw files cannot satisfy are refused from their headers alone, before DVC
removes any output."""

from __future__ import annotations

import pytest

from conftest import RAW_MNIST, default_params, run_stage, write_params, write_raw_dir
from digits.params import load_params
from digits.params_file import ParamsError
from stages.check_params import check_against_raw_data


@pytest.mark.parametrize(
    "changes, expected",
    [
        (
            {"val_size": 60000},
            "data.val_size = 60000: must be at most 59999 (data/raw/mnist/train-labels-idx1-ubyte.gz holds 60,000 "
            "training images)",
        ),
        ({"train_size": 55001}, "data.train_size = 55001: at most 55000"),
        ({"test_size": 10001}, "data.test_size = 10001: at most 10000"),
    ],
)
def test_sizes_the_shipped_mnist_cannot_satisfy_are_refused(changes, expected):
    data = load_params().data.model_copy(update=changes)
    with pytest.raises(ParamsError) as error:
        check_against_raw_data(data)
    assert expected in str(error.value)


def test_sizes_within_the_data_pass_and_count_only_the_headers(tmp_path):
    check_against_raw_data(
        load_params().data.model_copy(update={"val_size": 59999, "train_size": None, "test_size": 10000})
    )
    small = write_raw_dir(tmp_path / "small", train=60, test=20)
    check_against_raw_data(
        load_params().data.model_copy(update={"raw_dir": str(small), "val_size": 10, "train_size": 50, "test_size": 20})
    )
    with pytest.raises(ParamsError, match=r"data.val_size = 60: must be at most 59 \(.*holds 60 training images\)"):
        check_against_raw_data(
            load_params().data.model_copy(update={"raw_dir": str(small), "val_size": 60, "train_size": None})
        )


@pytest.mark.slow
def test_check_params_command_fails_on_a_size_the_data_cannot_satisfy(tmp_path):
    params = default_params()
    params["data"].update(raw_dir=str(RAW_MNIST), val_size=60000)
    write_params(tmp_path, params)
    result = run_stage("stages.check_params", tmp_path, "params.yaml")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "data.val_size = 60000" in result.stderr and "60,000 training images" in result.stderr
    assert "dvc checkout" not in result.stderr  # check_params has no outputs to restore
