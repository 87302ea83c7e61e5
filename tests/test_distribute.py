"""digits/distribute.py: hardware.distribute becomes the right strategy, or one clear error.

Training under the strategies is tested in test_training.py (mirrored, in
process) and test_train.py (two workers on localhost).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tensorflow as tf

from digits.distribute import (
    check_tf_config,
    describe,
    is_chief,
    make_strategy,
    mirrored_devices,
    output_root,
    split_cpu,
)
from digits.errors import PipelineError
from digits.params import load_params


def _hardware(**changes):
    return load_params().hardware.model_copy(update=changes)


def test_none_is_the_single_device_path():
    assert make_strategy(_hardware(distribute="none")) is None
    assert is_chief(None) and describe(None) == "one device"


def test_mirrored_on_two_logical_cpus():
    strategy = make_strategy(_hardware(distribute="mirrored", devices=2))
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.num_replicas_in_sync == 2
    assert describe(strategy) == "2 replicas (CPU:0, CPU:1)"
    assert is_chief(strategy)
    with output_root(strategy) as root:
        assert root == Path(".")


def test_mirrored_without_gpu_needs_a_device_count():
    with pytest.raises(
        PipelineError,
        match=r"hardware\.devices = null: with hardware\.distribute = mirrored and no GPU .* set hardware\.devices",
    ):
        mirrored_devices(None)


def test_the_cpu_cannot_be_resplit_once_tensorflow_runs():
    tf.constant(1.0)  # TensorFlow is initialised (conftest split the CPU in two)
    split_cpu(2)  # what it already is: fine
    with pytest.raises(PipelineError, match=r"hardware\.devices = 3: TensorFlow was already initialised"):
        split_cpu(3)


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(
        PipelineError, match=r"hardware\.distribute = multi_worker needs the TF_CONFIG environment variable, e\.g\. \{"
    ):
        make_strategy(_hardware(distribute="multi_worker"))


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("not json", r"TF_CONFIG is not a cluster description \(JSONDecodeError"),
        (
            json.dumps({"task": {"type": "worker", "index": 0}}),
            r"TF_CONFIG is not a cluster description \(KeyError: 'cluster'\)",
        ),
        (
            json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}),
            r"TF_CONFIG task = .*must name a 'worker'",
        ),
        (
            json.dumps({"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}),
            r"TF_CONFIG task = .*must name a 'worker'",
        ),
        (
            json.dumps({"cluster": {"worker": []}, "task": {"type": "chief", "index": 0}}),
            r"TF_CONFIG task = .*must name a 'worker'",
        ),
    ],
)
def test_malformed_tf_config_names_what_is_wrong(raw, expected):
    with pytest.raises(PipelineError, match=expected):
        check_tf_config(raw)


def test_a_well_formed_tf_config_passes():
    check_tf_config(json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}))
    check_tf_config(
        json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief", "index": 0}})
    )
