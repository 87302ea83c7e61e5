"""Running the stages in a scratch folder with changed params, as ``dvc exp run -S`` would: for tests, benchmarks and
tools.

A stage reads ``params.yaml`` and writes ``data/``, ``models/``, ``metrics/``
and ``plots/`` relative to its working directory, so a folder holding its own
params.yaml is a workspace of its own. This module is the one place that
knows how to make one (the shipped params, changed, with ``data.raw_dir``
pointing at the shipped MNIST) and how to start a stage there (``python -m
stages.X`` with the project importable). No stage imports it.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from digits.params_file import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
RAW_MNIST = ROOT / "data" / "raw" / "mnist"
# Every distortion of digits.augment on, at the best recipe's strengths (and a shear): the ``augment`` section the
# tests, tools/same_bits.py and the benchmarks use to exercise all of it.
EVERY_AUGMENTATION = {
    "rotation": 12.0,
    "scale": 0.1,
    "shift": 2.0,
    "shear": 5.0,
    "elastic_alpha": 30.0,
    "elastic_sigma": 5.0,
}
# Every training feature on (Nesterov momentum with warm-up, weight decay, max-norm, label smoothing, dropout,
# keep: best, weight averaging), at the best recipe's strengths: the ``train`` changes that exercise all of the loop.
EVERY_TRAINING_FEATURE = {
    "optimizer": "momentum",
    "nesterov": True,
    "lr": 0.05,
    "warmup_epochs": 1,
    "weight_decay": 2e-5,
    "max_norm": 4.0,
    "label_smoothing": 0.05,
    "dropout_input": 0.1,
    "dropout_hidden": 0.2,
    "keep": "best",
    "ema_decay": 0.99,
}


def shipped_params() -> dict:
    """params.yaml as committed, with ``data.raw_dir`` made absolute so that it holds in any folder."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["raw_dir"] = str(ROOT / params["data"]["raw_dir"])
    return params


def with_changes(params: Mapping, changes: Mapping[str, Mapping] = (), overrides: Sequence[str] = ()) -> dict:
    """A copy of ``params`` with whole-section ``changes`` ({"train": {"epochs": 2}}) and ``-S key=value``
    ``overrides``.

    An override's value is read as ``dvc exp run -S`` reads it (YAML 1.2: ``2e-05`` is a float).
    """
    params = copy.deepcopy(dict(params))
    for section, values in dict(changes).items():
        params[section].update(values)
    for override in overrides:
        key, value = override.split("=", 1)
        section, name = key.split(".")
        params[section][name] = parse_yaml(value)
    return params


def write_params(directory: Path, params: Mapping) -> Path:
    """``params`` as ``directory``/params.yaml, keys in their order."""
    path = Path(directory) / "params.yaml"
    path.write_text(yaml.safe_dump(dict(params), sort_keys=False))
    return path


def stage_env(extra: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment a stage runs in: this one, the project importable, TensorFlow's start-up log quiet, unbuffered.

    ``extra`` adds or replaces variables; ``drop`` removes them (``TF_CPP_MIN_LOG_LEVEL``: the start-up a user sees).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(extra or {})}
    return {key: value for key, value in env.items() if key not in drop}


def stage_command(module: str, *args: str, python: str = sys.executable, launcher: Sequence[str] = ()) -> list[str]:
    """``python -m module args``, behind ``launcher`` (an emulator such as qemu) if given."""
    return [*launcher, python, "-m", module, *args]


def run_stage(
    module: str,
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
    timeout: float | None = 600,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python -m module`` in ``cwd``, output captured; with ``check``, a failure raises naming the stage and its
    stderr.

    ``env`` and ``drop`` change the environment as ``stage_env`` says.
    """
    result = subprocess.run(
        stage_command(module, *args),
        cwd=cwd,
        env=stage_env(env, drop=drop),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{module} failed in {cwd} (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result


@contextmanager
def scratch_workspace(
    changes: Mapping[str, Mapping] = (), overrides: Sequence[str] = (), *, keep: Path | None = None
) -> Iterator[Path]:
    """A folder holding the shipped params.yaml with ``changes`` and ``overrides``: removed afterwards, unless ``keep``.

    ``keep`` is a folder to use instead of a temporary one (created if needed, left in place).
    """
    params = with_changes(shipped_params(), changes, overrides)
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        write_params(keep, params)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="digits-") as directory:
        write_params(Path(directory), params)
        yield Path(directory)


@contextmanager
def serving(cwd: Path, *args: str, timeout: float = 120) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m stages.serve --port 0 args`` running in ``cwd``; yields its base URL (``http://127.0.0.1:PORT``)
    and the process, once it listens.

    The server is stopped with Ctrl-C (SIGINT) afterwards, as a user stops it; its stderr stays readable.
    """
    process = subprocess.Popen(
        stage_command("stages.serve", "--port", "0", *args),
        cwd=cwd,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "serve: <model> at http://HOST:PORT/ (Ctrl-C stops)", once it listens
        if " at http://" not in line:
            process.kill()
            raise RuntimeError(f"stages.serve did not start in {cwd}:\n{line}{process.stderr.read()[-3000:]}")
        yield line.split(" at ", 1)[1].split()[0].rstrip("/"), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
