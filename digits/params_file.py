"""Reading params.yaml safely: the bytes, the text and the YAML, before the schema (digits.params) sees them.

The file is read as DVC reads it (YAML 1.2 floats: ``1e-3`` is a float) and
refused fast and in little memory when it is hostile: too large, not UTF-8, a
key given twice, nested too deeply, or an anchor bomb. Each refusal is one
``ParamsError`` naming the file and, where it can, the line.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path

import yaml

from digits.errors import PipelineError

# Bounds on what a params file may be, so that a hostile one is refused fast and in little memory:
# the real one is 3 kB with about 60 values, nested 3 deep.
MAX_FILE_BYTES = 1 << 20
MAX_NESTING = 20
MAX_VALUES = 10_000  # counting every use of a YAML anchor (an "anchor bomb" expands to billions)
EXCERPT = reprlib.Repr()  # what an error message shows of a value: a short excerpt, never all of it
EXCERPT.maxlevel, EXCERPT.maxlist, EXCERPT.maxdict, EXCERPT.maxstring, EXCERPT.maxother = 2, 8, 4, 60, 60


class ParamsError(PipelineError):
    """params.yaml is unreadable or breaks the schema."""


def read_params_file(path: Path) -> object:
    """The YAML document in ``path``, as Python values, after every check of this module."""
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
        raise ParamsError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8"
        ) from None
    try:
        raw = parse_yaml(text, source=str(path))
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None
    return raw


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-3`` as a float, as YAML 1.2 and DVC do.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``lr: 1e-3`` would
    otherwise arrive as the string "1e-3".
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
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
    """How many values ``node`` holds once its aliases are expanded; raises on a duplicate key, deep nesting or too many
    values.

    ``sizes`` remembers each node already counted, so an anchor used a
    million times is counted in one step, not a million.
    """
    if id(node) in sizes:
        return sizes[id(node)]
    if depth > MAX_NESTING:
        raise ParamsError(
            f"{source}, line {node.start_mark.line + 1}: nested too deeply (at most {MAX_NESTING} levels)"
        )
    size = 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                if key.value in seen:
                    raise ParamsError(
                        f"{source}, line {key.start_mark.line + 1}: key {EXCERPT.repr(key.value)} given twice "
                        f"(first on line {seen[key.value]}); YAML allows each key once"
                    )
                seen[key.value] = key.start_mark.line + 1
            size += _check_node(key, source=source, depth=depth + 1, sizes=sizes) + _check_node(
                value, source=source, depth=depth + 1, sizes=sizes
            )
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_check_node(item, source=source, depth=depth + 1, sizes=sizes) for item in node.value)
    if size > MAX_VALUES:
        raise ParamsError(
            f"{source}, line {node.start_mark.line + 1}: holds more than {MAX_VALUES:,} values once its anchors are "
            "expanded "
            f"(params.yaml holds about 60)"
        )
    sizes[id(node)] = size
    return size
