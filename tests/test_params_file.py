"""digits/params_file.py: params.yaml read as DVC reads it, and a hostile file refused fast, in bounded memory,
with one short error."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, default_params, write_params
from digits.params import load_params, parse_params
from digits.params_file import ParamsError, parse_yaml


def test_yaml_floats_without_a_dot_are_floats(tmp_path):
    params = default_params()
    path = write_params(tmp_path, params)
    path.write_text(path.read_text().replace("lr: 0.5", "lr: 1e-3"))
    assert load_params(path).train.lr == 0.001


def _shipped_text() -> str:
    return (ROOT / "params.yaml").read_text()


def _anchor_bomb(levels: int = 9) -> str:
    """Each anchor a list of ten of the one before: 10**levels values once expanded, a few hundred bytes written."""
    lines = ["bomb0: &bomb0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"bomb{i}: &bomb{i} [" + ", ".join([f"*bomb{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n" + _shipped_text().replace("hidden: [256, 128]", f"hidden: *bomb{levels}")


@pytest.mark.parametrize(
    "make, expected",
    [
        (
            lambda: _shipped_text().replace("  epochs: 20", "  epochs: 6\n  epochs: 50").encode(),
            r"params\.yaml, line \d+: key 'epochs' given twice \(first on line \d+\); YAML allows each key once",
        ),
        (
            lambda: _shipped_text().replace("# Every", "# \xe9very").encode("latin-1"),
            r"params\.yaml, line 1: not UTF-8 text \(byte 0xe9\)",
        ),
        (
            lambda: _shipped_text().replace("hidden: [256, 128]", "hidden: " + "[" * 3000 + "]" * 3000).encode(),
            r"params\.yaml(, line \d+)?: nested too deeply \(at most 20 levels\)",
        ),
        (
            lambda: _anchor_bomb().encode(),
            r"params\.yaml, line \d+: holds more than 10,000 values once its anchors are expanded",
        ),
        (lambda: b"x" * (2 << 20), r"params\.yaml: larger than 1 MiB"),
        (
            lambda: _shipped_text().replace("activation: relu", "activation: " + "x" * 100_000).encode(),
            r"^params\.yaml: model\.activation = 'x{20,40}\.\.\.x{20,40}': Input should be 'relu', 'sigmoid' or "
            r"'tanh'$",
        ),
    ],
)
def test_a_hostile_params_file_gets_one_short_error(tmp_path, make, expected):
    path = tmp_path / "params.yaml"
    path.write_bytes(make())
    with pytest.raises(ParamsError) as error:
        load_params(path)
    message = str(error.value).replace(str(tmp_path) + "/", "")
    assert re.search(expected, message), message
    assert len(message) < 400


def test_anchors_within_reason_are_still_yaml():
    text = "shared: &hidden [256, 128]\n" + _shipped_text().replace("hidden: [256, 128]", "hidden: *hidden")
    params = parse_params({key: value for key, value in parse_yaml(text).items() if key != "shared"})
    assert params.model.hidden == [256, 128]
