"""Shared fixtures: the shipped MNIST, small IDX files, and a prepared slice.

Stage entry points read ``params.yaml`` and write ``data/``, ``models/``,
``metrics/`` relative to the working directory, so tests run them in a
temporary work directory (``workdir``) holding its own params.yaml.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from digits import scratch
from digits.scratch import EVERY_AUGMENTATION, RAW_MNIST, ROOT, shipped_params, with_changes, write_params

__all__ = ["RAW_MNIST", "ROOT", "write_params"]  # tests import these from here, beside the fixtures


def pytest_configure(config: pytest.Config) -> None:
    """Show TensorFlow two logical CPU devices, so tests can run MirroredStrategy without a GPU.

    This must happen before TensorFlow initialises. Single-device code still
    runs on CPU:0 and is unaffected.
    """
    from digits.distribute import split_cpu

    split_cpu(2)
    # A shell that starts a command in the background (`make test &`, nohup) sets it to ignore SIGINT, every process
    # it starts inherits that, and a Python started ignoring SIGINT never raises KeyboardInterrupt: the Ctrl-C tests
    # would see their stages carry on. A handler (unlike SIG_IGN) is reset to the default in the stages it starts.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# The longest tests, started first (longest first) so that the two workers (pytest-xdist) finish together: the
# emulated CPUs and the benchmark for `make test` (seconds measured on the 2-core VM), then the longest of the quick
# loop (`-m "not slow"`).
LONGEST_FIRST = (
    "test_same_bits.py::test_an_emulated_cpu_of_another_maker_and_generation_gives_the_native_bits",  # 300 s
    "test_same_bits.py::test_an_emulated_arm64_cpu_with_sme_gives_the_native_bits",  # 280 s, where .aarch64/ is
    "test_benchmarks.py::test_repeats_run_independent_seed_sets_and_end_with_their_mean",  # 180 s
    "test_training.py::test_same_seed_gives_identical_weights_and_another_seed_does_not",
    "test_averaging.py::test_resuming_with_averaging_gives_the_uninterrupted_bits",
    "test_training.py::test_resuming_from_a_checkpoint_gives_the_uninterrupted_weights",
    "test_augment.py::test_compiled_augmentation_matches_eager",
    "test_averaging.py::test_the_average_is_what_validation_measures_and_what_the_run_keeps",
    "test_training.py::test_checkpoint_from_other_params_is_not_resumed",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, name in enumerate(LONGEST_FIRST) if item.nodeid.endswith(name)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: the rest keep their order


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
    """The shipped params (``data.raw_dir`` absolute: they hold in a test's folder)."""
    return shipped_params()


def small_params(**changes: dict) -> dict:
    """The shipped params on a slice of MNIST, then ``changes`` by section: fast enough for a unit test."""
    small = {
        "data": {"val_size": 500, "train_size": 2000, "test_size": 1000},
        "model": {"hidden": [64, 32]},
        "train": {"epochs": 2, "batch_size": 100},
    }
    return with_changes(with_changes(shipped_params(), small), changes)


# Whether the running test is marked slow: run_stage refuses to start a stage otherwise, so the quick loop
# (`pytest -m "not slow"`) runs no stage, as README and docs/pipeline.md say.
_SLOW_TEST = {"now": True}


@pytest.fixture(autouse=True)
def _note_whether_slow(request: pytest.FixtureRequest):
    _SLOW_TEST["now"] = request.node.get_closest_marker("slow") is not None
    yield
    _SLOW_TEST["now"] = True  # fixtures torn down after the test may clean up with stages


def run_stage(
    module: str,
    cwd: Path,
    *args: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` in ``cwd`` with the project importable (``env`` added to the environment, ``drop``
    removed).

    Only in a test marked slow: a stage starts TensorFlow in a new process, seconds each time.
    """
    assert _SLOW_TEST["now"], f"{module} runs in a test not marked slow; mark it @pytest.mark.slow (see pytest.ini)"
    return scratch.run_stage(module, cwd, *args, env=env, drop=drop, timeout=timeout)


# Everything on: what the best recipe does to each batch, at strengths a unit test can see
RECIPE_TRAIN = {
    "dropout_input": 0.1,
    "dropout_hidden": 0.25,
    "label_smoothing": 0.1,
    "max_norm": 2.0,
    "weight_decay": 1e-4,
    "nesterov": True,
}
RECIPE_AUGMENT = EVERY_AUGMENTATION


def make_trainer(train, strategy=None, *, augment_changes=None, **train_changes):
    """A 784-64-32-10 Trainer on ``train`` (a DistributedTrainer under ``strategy``): the shipped params, 3 epochs,
    changed.

    Same params, same initial weights, with or without a strategy. Returns (trainer, train params).
    """
    from digits.params import load_params
    from digits.trainer import Regularization
    from digits.training import build_trainer

    params = load_params(ROOT / "params.yaml")
    settings = params.train.model_copy(update={"epochs": 3, **train_changes})
    regularization = Regularization.from_params(
        settings, params.augment.model_copy(update=augment_changes or {}), background=0.0
    )
    trainer = build_trainer(
        params.model.model_copy(update={"hidden": [64, 32]}),
        settings,
        input_size=train.images.shape[1],
        train_size=len(train),
        strategy=strategy,
        regularization=regularization,
    )
    return trainer, settings


def stage_workdir(tmp_path: Path, prepared_dir: Path, name: str = "run", **changes: dict) -> Path:
    """``tmp_path``/``name`` holding a copy of the prepared slice and the small params with ``changes``, for a stage."""
    directory = tmp_path / name
    shutil.copytree(prepared_dir, directory / "data" / "prepared")
    write_params(directory, small_params(**changes))
    return directory


def fit_on_slice(
    prepared_dir: Path, strategy=None, *, run: dict | None = None, checkpoint=None, log=None, **train_changes
):
    """``make_trainer`` on the prepared slice, then ``fit`` it with the train params also changed by ``run``.

    Returns (trainer, history); ``log`` collects fit's lines (default: dropped).
    """
    from digits.data import load_split
    from digits.training import fit

    train, val = load_split("train", prepared_dir), load_split("val", prepared_dir)
    trainer, settings = make_trainer(train, strategy, **train_changes)
    settings = settings.model_copy(update=run or {})
    history = fit(
        trainer, train=train, val=val, settings=settings, checkpoint=checkpoint, log=log or (lambda line: None)
    )
    return trainer, history


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory with the small params.yaml, for running stages."""
    write_params(tmp_path, small_params())
    return tmp_path


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/prepared/ for a 2000/500/1000 slice of the real MNIST, made once per session.

    By prepare's own main(), in this process (no stage start-up: the quick loop uses it);
    tests/test_prepare.py runs the stage itself.
    """
    from stages import prepare

    directory = tmp_path_factory.mktemp("prepared")
    write_params(directory, small_params())
    here = Path.cwd()
    os.chdir(directory)
    try:
        prepare.main()
    finally:
        os.chdir(here)
    return directory / "data" / "prepared"


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work directory with the default net trained by the stages for 3 epochs on 10k images and exported (~97 %
    accurate): the model of the predict, serve and page tests. Only for tests marked slow (it runs stages).
    """
    workdir = tmp_path_factory.mktemp("trained")
    write_params(workdir, small_params(data={"train_size": 10000}, model={"hidden": [256, 128]}, train={"epochs": 3}))
    for stage in ("stages.prepare", "stages.train", "stages.export"):
        result = run_stage(stage, workdir)
        assert result.returncode == 0, result.stderr
    return workdir


@pytest.fixture(scope="session")
def slice_saved_model(prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SavedModel of the 784-64-32-10 net fitted for 3 epochs on the prepared slice (~90 % accurate), exported in
    this process: a real model for the quick loop's server tests, in seconds.
    """
    from digits.export import export_saved_model

    trainer, _ = fit_on_slice(prepared_dir)
    path = tmp_path_factory.mktemp("slice_model") / "saved_model"
    export_saved_model(trainer.model, path, scale=default_params()["data"]["scale"])
    return path


@pytest.fixture
def small_disk(tmp_path: Path):
    """A function mounting a tmpfs of ``size`` bytes on a directory (read-only if asked): a real full or
    read-only disk. Needs root (or CAP_SYS_ADMIN); the tests that use it skip elsewhere."""
    mounted = []

    def mount(directory: Path, *, size: int, read_only: bool = False) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'not permitted'})")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", "-l", str(directory)], capture_output=True)


# ------------------------------------------------------------------ a DVC repository (tests/test_pipeline*.py)

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@t"]


def command_env(**extra: str) -> dict[str, str]:
    """The environment of a user of the venv running git or dvc: its bin first on PATH, quiet, no analytics."""
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def run_command(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command (git, dvc) in ``command_env()``; with ``check``, a failure fails the test."""
    result = subprocess.run(args, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of the project whose params train on a slice, after one `dvc repro`.

    Nothing `make setup` would do beyond installing requirements.txt: a clone as DVC users set one up."""
    repo = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    for name in listed.stdout.splitlines():
        if (ROOT / name).is_file() and not name.startswith(("metrics/", "plots/")) and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"].update(val_size=500, train_size=2000, test_size=1000)
    params["train"].update(epochs=2)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_command(["git", "init", "-q"], repo)
    run_command(["git", "add", "-A"], repo)
    run_command(["git", *GIT_USER, "commit", "-qm", "slice"], repo)
    run_command([DVC, "repro"], repo)
    run_command(["git", "add", "-A"], repo)
    run_command(["git", *GIT_USER, "commit", "-qm", "repro"], repo)
    return repo
