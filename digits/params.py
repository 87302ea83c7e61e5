"""The params.yaml schema: checked in full before any stage does any work.

Every key is required and typed, unknown keys are rejected (a typo such as
``train.epoch`` must not be silently ignored), and each problem is reported as
``key = value: what is allowed``. ``python -m digits.params`` checks the file
on its own; dvc.yaml runs it as the ``check_params`` stage, so a typo anywhere
in params.yaml fails ``dvc repro`` even when no tracked param changed.
"""

from __future__ import annotations

import os
import re
import reprlib
import sys
from pathlib import Path
from typing import Annotated, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from digits.errors import PipelineError, run_main
from digits.idx import TEST_LABELS, TRAIN_LABELS, find_idx_file, read_idx_shape

PARAMS_FILE = Path("params.yaml")
# Bounds on what a params file may be, so that a hostile one is refused fast and in little memory:
# the real one is 3 kB with about 60 values, nested 3 deep.
MAX_FILE_BYTES = 1 << 20
MAX_NESTING = 20
MAX_VALUES = 10_000  # counting every use of a YAML anchor (an "anchor bomb" expands to billions)
# Keys that moved: the old name gets an error naming the new one.
MOVED_KEYS = {"train.distribute": "hardware.distribute", "train.devices": "hardware.devices"}
_EXCERPT = reprlib.Repr()  # what an error message shows of a value: a short excerpt, never all of it
_EXCERPT.maxlevel, _EXCERPT.maxlist, _EXCERPT.maxdict, _EXCERPT.maxstring, _EXCERPT.maxother = 2, 8, 4, 60, 60

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
    shift: list[Annotated[float, Field(ge=-14, le=14)]] = Field(default=[0.0, 0.0], min_length=2, max_length=2)  # pixels, [x, y]


class TtaParams(Section):
    """Test-time augmentation: evaluate's prediction averages the image and these views; export bakes them into the SavedModel."""

    views: list[TtaView] = Field(max_length=64)
    export: bool


class CommitteeParams(Section):
    """More networks beside the pipeline's, each with every seed moved by its number (digits.committee)."""

    members: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(max_length=64)

    @model_validator(mode="after")
    def _members_differ(self) -> CommitteeParams:
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"members = {_EXCERPT.repr(self.members)}: each member once (a member's number moves its seeds)")
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

    @model_validator(mode="after")
    def _fits_in_memory(self) -> Params:
        needed, available = training_memory_bytes(self), physical_memory_bytes()
        if needed > available:
            raise ValueError(f"model.hidden = {_EXCERPT.repr(self.model.hidden)}: training this network needs about {needed / 1e9:,.0f} GB "
                             f"(weights, gradients, optimizer state and the copies a checkpoint writes), "
                             f"more than this machine's {available / 1e9:,.0f} GB of memory")
        return self


def parameter_count(layer_sizes: list[int]) -> int:
    return sum(fan_in * fan_out + fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]))


def training_memory_bytes(params: Params, *, input_size: int = 784, num_classes: int = 10) -> int:
    """A lower bound on the memory the train stage needs for ``params``: float32 copies of every parameter.

    The weights, their gradient, the optimizer's slots (1 for momentum and
    RMSprop, 2 for Adam), the weight average (ema_decay), the best epoch's weights (keep: best), and the two
    copies saving a checkpoint makes (numpy arrays, the serialised file); plus
    one batch's activations forward and back.
    """
    layers = [input_size, *params.model.hidden, num_classes]
    slots = {"sgd": 0, "momentum": 1, "rmsprop": 1, "adam": 2}[params.train.optimizer]
    copies = 2 + slots + (params.train.ema_decay > 0) + (params.train.keep == "best") + 2
    return 4 * (copies * parameter_count(layers) + 2 * params.train.batch_size * sum(layers))


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


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


def parse_yaml(text: str, *, source: str = "params.yaml") -> object:
    """YAML as DVC reads it (``1e-3`` is a float): for params.yaml and for ``-S key=value`` overrides.

    The document is composed and checked before any Python value is built:
    a key given twice is refused (PyYAML keeps the last silently; DVC refuses
    the file), and so are nesting deeper than MAX_NESTING and more than
    MAX_VALUES values once anchors are expanded.
    """
    loader = _YamlLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ParamsError(f"{source}: nested too deeply (at most {MAX_NESTING} levels)") from None
        if node is None:
            return None
        _check_node(node, source=source, depth=0, sizes={})
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_node(node: yaml.Node, *, source: str, depth: int, sizes: dict[int, int]) -> int:
    """How many values ``node`` holds once its aliases are expanded; raises on a duplicate key, deep nesting or too many values.

    ``sizes`` remembers each node already counted, so an anchor used a
    million times is counted in one step, not a million.
    """
    if id(node) in sizes:
        return sizes[id(node)]
    if depth > MAX_NESTING:
        raise ParamsError(f"{source}, line {node.start_mark.line + 1}: nested too deeply (at most {MAX_NESTING} levels)")
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise ParamsError(f"{source}, line {key.start_mark.line + 1}: key {_EXCERPT.repr(key.value)} given twice "
                                      f"(first on line {seen[key.value]}); YAML allows each key once")
                seen[key.value] = key.start_mark.line + 1
            size += _check_node(key, source=source, depth=depth + 1, sizes=sizes) + _check_node(value, source=source, depth=depth + 1, sizes=sizes)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_check_node(item, source=source, depth=depth + 1, sizes=sizes) for item in node.value)
    if size > MAX_VALUES:
        raise ParamsError(f"{source}, line {node.start_mark.line + 1}: holds more than {MAX_VALUES:,} values once its anchors are expanded "
                          f"(params.yaml holds about 60)")
    sizes[id(node)] = size
    return size


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
    return f"{key} = {_EXCERPT.repr(error.get('input'))}: {message}"


def _item_fields(loc: list[str]) -> list[str]:
    """The keys allowed where ``loc`` points: the fields of the section model holding it, e.g. TtaView's for tta.views.0.zoom."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation
        model = next(arg for arg in (annotation, *get_args(annotation)) if isinstance(arg, type) and issubclass(arg, BaseModel))
    return list(model.model_fields)


def parse_params(raw: object, *, source: str = "params.yaml") -> Params:
    """Validate an already-loaded params mapping; raise one ParamsError listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections (data, model, train, hardware, augment, evaluate, tta, committee), got {type(raw).__name__}")
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
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except OSError as error:
        raise ParamsError(f"{path}: cannot be read ({error.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ParamsError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; params.yaml is a few kB of settings")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ParamsError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8") from None
    try:
        raw = parse_yaml(text, source=str(path))
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
