"""digits/params.py: one error per bad-params class, naming key, value and what is allowed."""

from __future__ import annotations

import re

import pytest

from conftest import default_params, run_stage, write_params
from digits.params import load_params, parse_params
from digits.params_file import ParamsError


def test_shipped_params_are_valid():
    params = load_params()
    assert params.model.hidden == [256, 128]
    assert params.data.scale == [0.0, 1.0]


def _error_for(section: str, key: str, value) -> str:
    params = default_params()
    params[section][key] = value
    with pytest.raises(ParamsError) as error:
        parse_params(params)
    return str(error.value)


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("train", "lr", 0, r"train\.lr = 0: Input should be greater than 0"),
        ("train", "lr", -0.1, r"train\.lr = -0\.1: Input should be greater than 0"),
        ("train", "epochs", 0, r"train\.epochs = 0: Input should be greater than or equal to 1"),
        ("train", "epochs", "5", r"train\.epochs = '5': Input should be a valid integer"),
        ("train", "epochs", True, r"train\.epochs = True: Input should be a valid integer"),
        ("train", "batch_size", 2.5, r"train\.batch_size = 2\.5: Input should be a valid integer"),
        ("model", "hidden", [256, 0], r"model\.hidden\.1 = 0: Input should be greater than or equal to 1"),
        ("model", "hidden", [-3], r"model\.hidden\.0 = -3: Input should be greater than or equal to 1"),
        ("model", "hidden", 256, r"model\.hidden = 256: Input should be a valid list"),
        ("model", "activation", "gelu", r"model\.activation = 'gelu': Input should be 'relu', 'sigmoid' or 'tanh'"),
        (
            "train",
            "optimizer",
            "adamw",
            r"train\.optimizer = 'adamw': Input should be 'sgd', 'momentum', 'rmsprop' or 'adam'",
        ),
        ("train", "loss", "hinge", r"train\.loss = 'hinge': Input should be 'cross_entropy' or 'mse'"),
        ("data", "scale", [1, 0], r"data\.scale = \[1\.0, 0\.0\]: must be \[low, high\] with low < high"),
        ("data", "val_size", 0, r"data\.val_size = 0: Input should be greater than or equal to 1"),
        ("train", "momentum", 1.0, r"train\.momentum = 1\.0: Input should be less than 1"),
        (
            "hardware",
            "distribute",
            "mirror",
            r"hardware\.distribute = 'mirror': Input should be 'none', 'mirrored' or 'multi_worker'",
        ),
        (
            "hardware",
            "distribute",
            None,
            r"hardware\.distribute = None: Input should be 'none', 'mirrored' or 'multi_worker'",
        ),
        ("hardware", "devices", 0, r"hardware\.devices = 0: Input should be greater than or equal to 1"),
        # regularisation and augmentation
        ("train", "dropout_input", -0.1, r"train\.dropout_input = -0\.1: Input should be greater than or equal to 0"),
        ("train", "dropout_hidden", 1.0, r"train\.dropout_hidden = 1\.0: Input should be less than 1"),
        ("train", "label_smoothing", 1.5, r"train\.label_smoothing = 1\.5: Input should be less than 1"),
        ("train", "weight_decay", -1e-4, r"train\.weight_decay = -0\.0001: Input should be greater than or equal to 0"),
        ("train", "max_norm", 0.0, r"train\.max_norm = 0\.0: Input should be greater than 0"),
        ("train", "keep", "first", r"train\.keep = 'first': Input should be 'last' or 'best'"),
        ("train", "patience", 0, r"train\.patience = 0: Input should be greater than or equal to 1"),
        ("train", "ema_decay", 1.0, r"train\.ema_decay = 1\.0: Input should be less than 1"),
        ("train", "ema_decay", -0.5, r"train\.ema_decay = -0\.5: Input should be greater than or equal to 0"),
        ("train", "nesterov", "yes", r"train\.nesterov = 'yes': Input should be a valid boolean"),
        (
            "train",
            "nesterov",
            True,
            r"train\.nesterov = true: applies to optimizer momentum only \(train\.optimizer is sgd\)",
        ),
        ("train", "warmup_epochs", 20, r"train\.warmup_epochs = 20: must be less than train\.epochs \(20\)"),
        (
            "model",
            "init",
            "he_uniform",
            r"model\.init = 'he_uniform': Input should be 'truncated_normal', 'uniform', 'glorot' or 'he'",
        ),
        ("augment", "elastic_sigma", -1.0, r"augment\.elastic_sigma = -1\.0: Input should be greater than 0"),
        (
            "augment",
            "elastic_alpha",
            -5.0,
            r"augment\.elastic_alpha = -5\.0: Input should be greater than or equal to 0",
        ),
        ("augment", "rotation", 270.0, r"augment\.rotation = 270\.0: Input should be less than or equal to 180"),
        ("augment", "scale", 1.0, r"augment\.scale = 1\.0: Input should be less than 1"),
        ("augment", "shift", -2.0, r"augment\.shift = -2\.0: Input should be greater than or equal to 0"),
        ("augment", "shear", 90.0, r"augment\.shear = 90\.0: Input should be less than 90"),
        ("augment", "seed", -1, r"augment\.seed = -1: Input should be greater than or equal to 0"),
        ("tta", "views", [{"scale": 3.0}], r"tta\.views\.0\.scale = 3\.0: Input should be less than 2"),
        ("tta", "views", [{"shift": [1.0]}], r"tta\.views\.0\.shift = \[1\.0\]: List should have at least 2 items"),
        (
            "tta",
            "views",
            [{}, {"zoom": 1.1}],
            r"tta\.views\.1\.zoom: unknown key \(allowed in tta\.views\.1: rotation, scale, shift\)",
        ),
        ("tta", "views", {"shift": [1, 0]}, r"tta\.views = \{'shift': \[1, 0\]\}: Input should be a valid list"),
        ("tta", "export", "yes", r"tta\.export = 'yes': Input should be a valid boolean"),
        ("committee", "members", [0], r"committee\.members\.0 = 0: Input should be greater than or equal to 1"),
        (
            "committee",
            "members",
            [2, 5, 2],
            r"committee\.members = \[2, 5, 2\]: each member once \(a member's number moves its seeds\)",
        ),
        ("committee", "members", 3, r"committee\.members = 3: Input should be a valid list"),
    ],
)
def test_bad_value_names_key_value_and_allowed(section, key, value, expected):
    message = _error_for(section, key, value)
    assert re.search(expected, message), message


def test_unknown_key_is_a_typo_error_listing_the_allowed_keys():
    params = default_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    with pytest.raises(
        ParamsError, match=r"train\.epochs: missing; train\.epoch: unknown key \(allowed in train: .*epochs"
    ):
        parse_params(params)


def test_a_key_that_moved_names_its_new_home():
    """train.distribute and train.devices are hardware.distribute and hardware.devices: an old params.yaml gets told
    where.
    """
    params = default_params()
    params["train"].update(distribute="mirrored", devices=2)
    with pytest.raises(ParamsError) as error:
        parse_params(params)
    assert str(error.value) == (
        "params.yaml: train.distribute: renamed hardware.distribute (move it to the hardware section); "
        "train.devices: renamed hardware.devices (move it to the hardware section)"
    )


def test_unknown_section_is_an_error():
    params = default_params()
    params["trian"] = {"epochs": 3}
    with pytest.raises(
        ParamsError,
        match=r"trian: unknown section \(allowed: data, model, train, hardware, augment, evaluate, tta, committee\)",
    ):
        parse_params(params)


@pytest.mark.slow
def test_every_stage_refuses_bad_params_before_writing_anything(tmp_path):
    params = default_params()
    params["train"]["epoch"] = 3
    write_params(tmp_path, params)
    for stage in ("stages.check_params", "stages.prepare", "stages.train", "stages.evaluate"):
        result = run_stage(stage, tmp_path)
        assert result.returncode == 1, stage
        assert "train.epoch: unknown key" in result.stderr
        # One clean line (TensorFlow's own import chatter may precede it), no traceback.
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: params.yaml: train.epoch: unknown key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
