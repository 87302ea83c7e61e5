"""The params.yaml schema: checked in full before any stage does any work.

Every key is required and typed, unknown keys are rejected (a typo such as
``train.epoch`` must not be silently ignored), and each problem is reported as
``key = value: what is allowed``. The schema is the same on every machine:
whether a network fits this machine's memory is checked where training
starts (digits.memory). ``python -m stages.check_params`` checks the file on
its own; dvc.yaml runs it as the ``check_params`` stage, so a typo anywhere
in params.yaml fails ``dvc repro`` even when no tracked param changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from digits.params_file import EXCERPT, ParamsError, read_params_file

PARAMS_FILE = Path("params.yaml")
# Keys that moved: the old name gets an error naming the new one.
MOVED_KEYS = {"train.distribute": "hardware.distribute", "train.devices": "hardware.devices"}

PositiveInt = Annotated[int, Field(ge=1)]
Seed = Annotated[int, Field(ge=0, lt=2**31)]
Rate = Annotated[float, Field(ge=0, lt=1)]  # a probability or fraction: 0 is off
Strength = Annotated[float, Field(ge=0)]


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
    ema_decay: Rate  # 0 = off

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs = {self.warmup_epochs}: must be less than train.epochs ({self.epochs})")
        if self.nesterov and self.optimizer != "momentum":
            raise ValueError(
                f"nesterov = true: applies to optimizer momentum only (train.optimizer is {self.optimizer})"
            )
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


class HardwareParams(Section):
    """Where train runs (digits.distribute): not part of the recipe, so the Keras baseline does not depend on it."""

    distribute: Literal["none", "mirrored", "multi_worker"]
    devices: PositiveInt | None


class EvaluateParams(Section):
    misclassified_shown: Annotated[int, Field(ge=1, le=400)]


class TtaView(Section):
    """One fixed distortion that test-time augmentation adds (digits.tta); a key left out is no change."""

    rotation: Annotated[float, Field(ge=-180, le=180)] = 0.0  # degrees, counter-clockwise
    scale: Annotated[float, Field(gt=0.5, lt=2)] = 1.0  # zoom factor
    shift: list[Annotated[float, Field(ge=-14, le=14)]] = Field(
        default=[0.0, 0.0], min_length=2, max_length=2
    )  # pixels, [x, y]


class TtaParams(Section):
    """Test-time augmentation: evaluate's prediction averages the image and these views; export bakes them into the
    SavedModel.
    """

    views: list[TtaView] = Field(max_length=64)
    export: bool


class CommitteeParams(Section):
    """More networks beside the pipeline's, each with every seed moved by its number (digits.committee)."""

    members: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(max_length=64)

    @model_validator(mode="after")
    def _members_differ(self) -> CommitteeParams:
        if len(set(self.members)) != len(self.members):
            raise ValueError(
                f"members = {EXCERPT.repr(self.members)}: each member once (a member's number moves its seeds)"
            )
        return self


class Params(Section):
    data: DataParams
    model: ModelParams
    train: TrainParams
    hardware: HardwareParams
    augment: AugmentParams
    evaluate: EvaluateParams
    tta: TtaParams
    committee: CommitteeParams


def _describe(error: dict, section_keys: dict[str, list[str]]) -> str:
    """One pydantic error as ``key = value: what is allowed``."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        if key in MOVED_KEYS:
            return f"{key}: renamed {MOVED_KEYS[key]} (move it to the {MOVED_KEYS[key].split('.')[0]} section)"
        if len(loc) == 1:
            return f"{key}: unknown section (allowed: {', '.join(section_keys)})"
        if len(loc) > 2:  # inside a list item, such as tta.views.0
            return f"{key}: unknown key (allowed in {'.'.join(loc[:-1])}: {', '.join(_item_fields(loc))})"
        return f"{key}: unknown key (allowed in {loc[0]}: {', '.join(section_keys[loc[0]])})"
    if error["type"] == "missing":
        return f"{key}: missing"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "value_error":
        # Cross-field checks already name their key and value: "scale = [1, 0]: ..."
        return f"{key}.{message}" if key else message
    return f"{key} = {EXCERPT.repr(error.get('input'))}: {message}"


def _item_fields(loc: list[str]) -> list[str]:
    """The keys allowed where ``loc`` points: the fields of the section model holding it, e.g. TtaView's for
    tta.views.0.zoom.
    """
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(
            arg for arg in (annotation, *get_args(annotation)) if isinstance(arg, type) and issubclass(arg, BaseModel)
        )
    return list(model.model_fields)


def parse_params(raw: object, *, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping; raise one ParamsError listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{source}: expected a mapping of sections (data, model, train, hardware, augment, evaluate, tta, "
            f"committee), got {type(raw).__name__}"
        )
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        section_keys = {name: list(field.annotation.model_fields) for name, field in Params.model_fields.items()}
        problems = [_describe(item, section_keys) for item in error.errors()]
        raise ParamsError(f"{source}: " + "; ".join(problems)) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read (digits.params_file) and validate params.yaml."""
    return parse_params(read_params_file(path), source=str(path))
