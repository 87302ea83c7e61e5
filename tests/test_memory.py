"""digits/memory.py: a network too large for this machine is refused where training starts, naming model.hidden;
the schema itself accepts it, the same on every machine."""

from __future__ import annotations

import re

import pytest

from digits.errors import PipelineError
from digits.memory import check_fits_in_memory, parameter_count, physical_memory_bytes, training_memory_bytes
from digits.params import load_params


def _params(hidden: list[int], **train):
    params = load_params()
    return params.model_copy(
        update={
            "model": params.model.model_copy(update={"hidden": hidden}),
            "train": params.train.model_copy(update=train),
        }
    )


def test_parameter_count_is_the_weights_and_biases():
    assert parameter_count([784, 256, 128, 10]) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235_146


def test_the_estimate_counts_each_copy_training_keeps():
    plain = training_memory_bytes(_params([256, 128], optimizer="sgd", ema_decay=0.0, keep="last"))
    adam = training_memory_bytes(_params([256, 128], optimizer="adam", ema_decay=0.0, keep="last"))
    everything = training_memory_bytes(_params([256, 128], optimizer="adam", ema_decay=0.99, keep="best"))
    assert adam - plain == everything - adam == 2 * 4 * 235_146  # two Adam slots; the average and the best weights


def test_a_network_too_large_for_this_machine_is_refused_naming_model_hidden():
    huge = _params([100_000, 100_000])
    assert training_memory_bytes(huge) > physical_memory_bytes()
    with pytest.raises(PipelineError) as error:
        check_fits_in_memory(huge)
    assert re.fullmatch(
        r"model\.hidden = \[100000, 100000\]: training this network needs about [\d,]+ GB .* more than "
        r"this machine's [\d,]+ GB of memory",
        str(error.value),
    ), str(error.value)
    check_fits_in_memory(load_params())  # the shipped params fit
