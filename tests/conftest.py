"""Shared fixtures: the shipped MNIST, small IDX files, and a prepared slice.

Stage entry points read ``params.yaml`` and write ``data/``, ``models/``,
``metrics/`` relative to the working directory, so tests run them in a
temporary work directory (``workdir``) holding its own params.yaml.
"""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
RAW_MNIST = ROOT / "data" / "raw" / "mnist"


def pytest_configure(config: pytest.Config) -> None:
    """Show TensorFlow two logical CPU devices, so tests can run MirroredStrategy without a GPU.

    This must happen before TensorFlow initialises. Single-device code still
    runs on CPU:0 and is unaffected.
    """
    from digits.distribute import split_cpu

    split_cpu(2)


# The longest tests, started first so that `make test`'s two workers (pytest-xdist) finish together.
LONGEST_FIRST = ("test_same_bits.py::test_an_emulated_cpu_of_another_maker_and_generation_gives_the_native_bits",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.endswith(LONGEST_FIRST))


def write_idx(path: Path, array: np.ndarray, *, magic: bytes | None = None, gzipped: bool | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file; gzipped when the name ends in .gz."""
    array = np.asarray(array, dtype=np.uint8)
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    payload = header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gzipped if gzipped is not None else path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def write_raw_dir(directory: Path, *, train: int = 60, test: int = 20, seed: int = 0, gzipped: bool = True) -> Path:
    """A small MNIST-format directory with random images and balanced labels."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gzipped else ""
    for stem, count in (("train", train), ("t10k", test)):
        write_idx(directory / f"{stem}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (count, 28, 28)))
        write_idx(directory / f"{stem}-labels-idx1-ubyte{suffix}", np.arange(count) % 10)
    return directory


def default_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def small_params(**overrides: dict) -> dict:
    """The shipped params on a slice of MNIST: fast enough for a unit test."""
    params = default_params()
    params["data"].update(raw_dir=str(RAW_MNIST), val_size=500, train_size=2000, test_size=1000)
    params["model"].update(hidden=[64, 32])
    params["train"].update(epochs=2, batch_size=100)
    for section, values in overrides.items():
        params[section].update(values)
    return params


def write_params(directory: Path, params: dict) -> Path:
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_stage(module: str, cwd: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` in ``cwd`` with the project importable (and ``env`` added to the environment)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory with the small params.yaml, for running stages."""
    write_params(tmp_path, small_params())
    return tmp_path


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/prepared/ for a 2000/500/1000 slice of the real MNIST, made once per session."""
    directory = tmp_path_factory.mktemp("prepared")
    write_params(directory, small_params())
    result = run_stage("stages.prepare", directory)
    assert result.returncode == 0, result.stderr
    return directory / "data" / "prepared"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A function mounting a tmpfs of ``size`` bytes on a directory (read-only if asked): a real full or
    read-only disk. Needs root (or CAP_SYS_ADMIN); the tests that use it skip elsewhere."""
    mounted = []

    def mount(directory: Path, *, size: int, read_only: bool = False) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not permitted'})")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)
