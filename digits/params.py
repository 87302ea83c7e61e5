"""The params.yaml schema: checked in full before any stage does any work.

Every key is required and typed, unknown keys are rejected (a typo such as
``train.epoch`` must not be silently ignored), and each problem is reported as
``key = value: what is allowed``. ``python -m digits.params`` checks the file
on its own; dvc.yaml runs it as the ``check_params`` stage, so a typo anywhere
in params.yaml fails ``dvc repro`` even when no tracked param changed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from digits.errors import PipelineError, run_main
from digits.idx import TEST_LABELS, TRAIN_LABELS, find_idx_file, read_idx_shape

PARAMS_FILE = Path("params.yaml")

PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]
Rate = Annotated[float, Field(ge=0, lt=1)]  # a probability or fraction: 0 is off
Strength = Annotated[float, Field(ge=0)]


class ParamsError(PipelineError):
    """params.yaml is unreadable or breaks the schema."""


class Section(BaseModel):
    """Strict: no coercion from strings or bools, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _require_range(key: str, values: list[float], *, example: str) -> None:
    low, high = values
    if not low < high:
        raise ValueError(f"{key} = {values}: must be [low, high] with low < high, e.g. {example}")


class DataParams(Section):
    raw_dir: str = Field(min_length=1)
    scale: list[float] = Field(min_length=2, max_length=2)
    val_size: PositiveInt
    split_seed: Seed
    train_size: PositiveInt | None
    test_size: PositiveInt | None

    @model_validator(mode="after")
    def _scale_is_a_range(self) -> DataParams:
        _require_range("scale", self.scale, example="[0, 1] or [-0.5, 0.5]")
        return self


class ModelParams(Section):
    hidden: list[PositiveInt]
    activation: Literal["relu", "sigmoid", "tanh"]
    init: Literal["truncated_normal", "uniform", "glorot", "he"]
    init_stddev: Annotated[float, Field(gt=0)]
    init_range: list[float] = Field(min_length=2, max_length=2)
    init_seed: Seed

    @model_validator(mode="after")
    def _range_is_a_range(self) -> ModelParams:
        _require_range("init_range", self.init_range, example="[0, 0.1]")
        return self


class TrainParams(Section):
    loss: Literal["cross_entropy", "mse"]
    optimizer: Literal["sgd", "momentum", "rmsprop", "adam"]
    lr: Annotated[float, Field(gt=0, le=1e3)]
    lr_schedule: Literal["constant", "exponential", "cosine"]
    lr_decay_rate: Annotated[float, Field(gt=0, le=1)]
    momentum: Annotated[float, Field(ge=0, lt=1)]
    batch_size: PositiveInt
    epochs: Annotated[int, Field(ge=1, le=100_000)]
    shuffle_seed: Seed
    distribute: Literal["none", "mirrored", "multi_worker"]
    devices: PositiveInt | None
    # what long runs need (all off by default)
    nesterov: bool
    warmup_epochs: Annotated[int, Field(ge=0)]
    weight_decay: Annotated[float, Field(ge=0, lt=1)]
    max_norm: Annotated[float, Field(gt=0)] | None
    label_smoothing: Rate
    dropout_input: Rate
    dropout_hidden: Rate
    dropout_seed: Seed
    keep: Literal["last", "best"]
    patience: PositiveInt | None

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs = {self.warmup_epochs}: must be less than train.epochs ({self.epochs})")
        if self.nesterov and self.optimizer != "momentum":
            raise ValueError(f"nesterov = true: applies to optimizer momentum only (train.optimizer is {self.optimizer})")
        return self


class AugmentParams(Section):
    """Random distortions of each training image; every strength 0 is off (digits.augment)."""

    seed: Seed
    rotation: Annotated[float, Field(ge=0, le=180)]
    scale: Annotated[float, Field(ge=0, lt=1)]
    shift: Annotated[float, Field(ge=0, le=14)]
    shear: Annotated[float, Field(ge=0, lt=90)]
    elastic_alpha: Strength
    elastic_sigma: Annotated[float, Field(gt=0)]


class EvaluateParams(Section):
    misclassified_shown: Annotated[int, Field(ge=1, le=400)]


class Params(Section):
    data: DataParams
    model: ModelParams
    train: TrainParams
    augment: AugmentParams
    evaluate: EvaluateParams


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float, as YAML 1.2 and DVC do.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``lr: 1e-3`` would
    otherwise arrive as the string "1e-3".
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> object:
    """YAML as DVC reads it (``1e-3`` is a float): for params.yaml and for ``-S key=value`` overrides."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - SafeLoader subclass


def _describe(error: dict, section_keys: dict[str, list[str]]) -> str:
    """One pydantic error as ``key = value: what is allowed``."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        if len(loc) == 1:
            return f"{key}: unknown section (allowed: {', '.join(section_keys)})"
        return f"{key}: unknown key (allowed in {loc[0]}: {', '.join(section_keys[loc[0]])})"
    if error["type"] == "missing":
        return f"{key}: missing"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        # Cross-field checks already name their key and value: "scale = [1, 0]: ..."
        return f"{key}.{message}"
    return f"{key} = {error.get('input')!r}: {message}"


def parse_params(raw: object, *, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping; raise one ParamsError listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (data, model, train, augment, evaluate), got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        section_keys = {name: list(field.annotation.model_fields) for name, field in Params.model_fields.items()}
        problems = [_describe(item, section_keys) for item in error.errors()]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None
    return parse_params(raw, source=str(path))


def check_against_raw_data(data: DataParams) -> None:
    """The sizes in ``data`` against the image counts in the raw files' headers (a few bytes read).

    Run by the check_params stage, before DVC removes any stage's outputs:
    ``data.val_size: 60000`` used to pass here and fail only in prepare,
    after DVC had already removed data/prepared/.
    """
    raw_dir = Path(data.raw_dir)
    if not raw_dir.is_dir():
        raise ParamsError(f"data.raw_dir = {data.raw_dir!r}: directory not found")
    train_file, test_file = find_idx_file(raw_dir, TRAIN_LABELS), find_idx_file(raw_dir, TEST_LABELS)
    train_count, test_count = read_idx_shape(train_file)[0], read_idx_shape(test_file)[0]
    problems = []
    if data.val_size >= train_count:
        problems.append(f"data.val_size = {data.val_size}: must be at most {train_count - 1} ({train_file} holds {train_count:,} training images)")
    elif data.train_size is not None and data.train_size > train_count - data.val_size:
        problems.append(f"data.train_size = {data.train_size}: at most {train_count - data.val_size} "
                        f"({train_file} holds {train_count:,} training images, data.val_size takes {data.val_size:,}), or null for all")
    if data.test_size is not None and data.test_size > test_count:
        problems.append(f"data.test_size = {data.test_size}: at most {test_count} ({test_file} holds {test_count:,} test images), or null for all")
    if problems:
        raise ParamsError("params.yaml: " + "; ".join(problems))


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else PARAMS_FILE
    params = load_params(path)
    check_against_raw_data(params.data)
    print(f"{path}: ok")


if __name__ == "__main__":
    run_main(main, has_outputs=False)
