"""digits/params.py: one error per bad-params class, naming key, value and what is allowed."""

from __future__ import annotations

import re

import pytest

from conftest import default_params, run_stage, write_params
from digits.params import ParamsError, load_params, parse_params


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


@pytest.mark.parametrize("section, key, value, expected", [
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
    ("train", "optimizer", "adamw", r"train\.optimizer = 'adamw': Input should be 'sgd', 'momentum', 'rmsprop' or 'adam'"),
    ("train", "loss", "hinge", r"train\.loss = 'hinge': Input should be 'cross_entropy' or 'mse'"),
    ("data", "scale", [1, 0], r"data\.scale = \[1\.0, 0\.0\]: must be \[low, high\] with low < high"),
    ("data", "val_size", 0, r"data\.val_size = 0: Input should be greater than or equal to 1"),
    ("train", "momentum", 1.0, r"train\.momentum = 1\.0: Input should be less than 1"),
    ("train", "distribute", "mirror", r"train\.distribute = 'mirror': Input should be 'none', 'mirrored' or 'multi_worker'"),
    ("train", "distribute", None, r"train\.distribute = None: Input should be 'none', 'mirrored' or 'multi_worker'"),
    ("train", "devices", 0, r"train\.devices = 0: Input should be greater than or equal to 1"),
])
def test_bad_value_names_key_value_and_allowed(section, key, value, expected):
    message = _error_for(section, key, value)
    assert re.search(expected, message), message


def test_unknown_key_is_a_typo_error_listing_the_allowed_keys():
    params = default_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    with pytest.raises(ParamsError, match=r"train\.epochs: missing; train\.epoch: unknown key \(allowed in train: .*epochs"):
        parse_params(params)


def test_unknown_section_is_an_error():
    params = default_params()
    params["trian"] = {"epochs": 3}
    with pytest.raises(ParamsError, match=r"trian: unknown section \(allowed: data, model, train, evaluate\)"):
        parse_params(params)


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    params = default_params()
    path = write_params(tmp_path, params)
    path.write_text(path.read_text().replace("lr: 0.5", "lr: 1e-3"))
    assert load_params(path).train.lr == 0.001


def test_every_stage_refuses_bad_params_before_writing_anything(tmp_path):
    params = default_params()
    params["train"]["epoch"] = 3
    write_params(tmp_path, params)
    for stage in ("digits.params", "stages.prepare", "stages.train", "stages.evaluate"):
        result = run_stage(stage, tmp_path)
        assert result.returncode == 1, stage
        assert "train.epoch: unknown key" in result.stderr
        # One clean line (TensorFlow's own import chatter may precede it), no traceback.
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: params.yaml: train.epoch: unknown key")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
