"""digits/checkpoints.py: a checkpoint round-trips exactly, resumes only its own run, and one that fails any check
is reported and training starts afresh."""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np
import pytest

from digits.artifacts import load_npz, save_npz
from digits.checkpoints import EpochRecord, History, fingerprint, restore_checkpoint, save_checkpoint
from digits.model import build_model
from digits.optimizers import make_optimizer
from digits.params import load_params


def _model_and_optimizer(seed: int = 1):
    """The 784-64-32-10 net with Nesterov momentum (a slot per Variable), from ``seed``."""
    params = load_params()
    model = build_model(params.model.model_copy(update={"hidden": [64, 32], "init_seed": seed}))
    settings = params.train.model_copy(update={"optimizer": "momentum", "nesterov": True})
    return model, make_optimizer(settings, model.parameters, steps_per_epoch=10)


def test_a_checkpoint_restores_weights_optimizer_state_and_named_history(tmp_path):
    model, optimizer = _model_and_optimizer(seed=1)
    optimizer.iterations.assign(17)
    history = History(
        [EpochRecord(1, 0.9, 0.7, 0.8, 0.75), EpochRecord(2, 0.5, 0.85, 0.6, 0.8)], best_weights=model.get_arrays()
    )
    save_checkpoint(
        tmp_path / "c.npz", model=model, optimizer=optimizer, epoch=2, run_fingerprint="run", history=history
    )

    fresh, fresh_optimizer = _model_and_optimizer(seed=2)
    messages = []
    done, restored = restore_checkpoint(
        tmp_path / "c.npz", model=fresh, optimizer=fresh_optimizer, run_fingerprint="run", epochs=5, log=messages.append
    )
    assert done == 2 and restored.rows == history.rows and restored.rows[1].val_accuracy == 0.8
    assert restored.best_epoch == 2 and restored.as_dicts()[0] == {
        "epoch": 1,
        "train_loss": 0.9,
        "train_accuracy": 0.7,
        "val_loss": 0.8,
        "val_accuracy": 0.75,
    }
    assert int(fresh_optimizer.iterations.numpy()) == 17
    for name, array in model.get_arrays().items():
        np.testing.assert_array_equal(fresh.get_arrays()[name], array)
    assert messages == [f"train: resuming from {tmp_path / 'c.npz'} after epoch 2 of 5"]

    other, other_optimizer = _model_and_optimizer()
    done, _ = restore_checkpoint(
        tmp_path / "c.npz",
        model=other,
        optimizer=other_optimizer,
        run_fingerprint="other",
        epochs=5,
        log=messages.append,
    )
    assert done == 0 and "made with other params; not resuming it" in messages[-1]


def test_the_fingerprint_is_a_function_of_the_params_alone():
    params = load_params()
    assert fingerprint(params.train, params.model) == fingerprint(params.train, params.model)
    assert fingerprint(params.train.model_copy(update={"lr": 0.1}), params.model) != fingerprint(
        params.train, params.model
    )


def _crafted_npz(path, **members):
    """An .npz whose members are raw bytes: headers that lie, arrays that are not arrays."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


def _lying_header(shape):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue() + bytes(64)


@pytest.mark.parametrize(
    "damage, why",
    [
        (
            lambda path, arrays: path.write_bytes(np.random.default_rng(0).bytes(4096)),
            r"not a readable \.npz \(damaged or not an npz",
        ),
        (
            lambda path, arrays: path.write_bytes(path.read_bytes()[:3000]),
            r"not a readable \.npz \(damaged or not an npz",
        ),
        (
            lambda path, arrays: save_npz(path, arrays | {"model/W1": np.zeros((3, 3), np.float32)}),
            r"array 'model/W1' is float32 \(3, 3\), expected float32 \(64, 32\)",
        ),
        (
            lambda path, arrays: save_npz(path, {k: v for k, v in arrays.items() if k != "model/b2"}),
            "missing array 'model/b2'",
        ),
        (
            lambda path, arrays: save_npz(path, {k: v for k, v in arrays.items() if k != "history"}),
            "missing array 'history'",
        ),
        (
            lambda path, arrays: save_npz(path, arrays | {"epoch": np.arange(3)}),
            r"array 'epoch' is int64 \(3,\), expected int64 \(\)",
        ),
        (
            lambda path, arrays: save_npz(path, arrays | {"epoch": np.array(5)}),
            "epoch 5 does not match its history of 1 epochs",
        ),
        (
            lambda path, arrays: save_npz(path, {k: v for k, v in arrays.items() if k != "fingerprint"}),
            "missing array 'fingerprint'",
        ),
        (
            lambda path, arrays: _crafted_npz(path, fingerprint=_lying_header((1 << 40,))),
            r"damaged: array 'fingerprint' claims shape \(1099511627776,\)",
        ),
        (lambda path, arrays: (path.unlink(), path.mkdir()), "a directory, not a file"),
    ],
)
def test_a_checkpoint_that_fails_any_check_is_reported_and_training_starts_afresh(tmp_path, damage, why):
    model, optimizer = _model_and_optimizer()
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        epoch=1,
        run_fingerprint="run",
        history=History([EpochRecord(1, 0.5, 0.9, 0.5, 0.9)]),
    )
    damage(path, load_npz(path))
    messages = []
    done, restored = restore_checkpoint(
        path, model=model, optimizer=optimizer, run_fingerprint="run", epochs=3, log=messages.append
    )
    assert (done, restored.rows) == (0, [])
    assert (
        len(messages) == 1
        and messages[0].startswith(f"train: not a usable checkpoint: {path}: ")
        and messages[0].endswith("; starting from scratch")
    )
    assert re.search(why, messages[0]), messages[0]
