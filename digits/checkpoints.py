"""Checkpoints and run state: what a killed or stopped run needs to resume to the uninterrupted run's bits.

After every epoch ``train`` writes models/checkpoint.npz (a ``persist``
output): the weights, the optimizer's state, the epoch, the history of
every epoch so far, with ``train.ema_decay`` the weight average
(digits.averaging), and with ``train.keep: best`` the best epoch's weights.
A checkpoint resumes only the run that made it (the same ``fingerprint`` of
its params) and only after its headers and values pass every check
(digits.artifacts); anything else is reported and the run starts afresh,
since a checkpoint is only ever a shortcut.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from digits.artifacts import ArraySpec, check_npz, load_npz, npz_headers, save_npz
from digits.errors import PipelineError
from digits.model import Mlp
from digits.optimizers import Optimizer


def fingerprint(*sections: object) -> str:
    """A short hash of the params that shaped a run; a checkpoint resumes only under the same one."""
    payload = json.dumps([s.model_dump() if hasattr(s, "model_dump") else s for s in sections], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class EpochRecord(NamedTuple):
    """One epoch's figures: a row of plots/train_history.csv."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float


HISTORY_COLUMNS = EpochRecord._fields


@dataclass
class History:
    """What a run has done so far: one record per epoch, and what model selection needs to carry across a resume."""

    rows: list[EpochRecord] = field(default_factory=list)
    best_weights: dict[str, np.ndarray] | None = None  # the weights after best_epoch, kept for train.keep = best
    stopped_early: bool = False  # ended by train.patience before train.epochs
    kept_epoch: int = 0  # the epoch whose weights fit left in the model (train.keep)

    def append(self, record: EpochRecord) -> None:
        self.rows.append(record)

    def keep(self, mode: str) -> None:
        """Set ``kept_epoch`` for ``train.keep = mode``: the best epoch so far, or the last; what the model keeps if the
        run ends here.
        """
        self.kept_epoch = self.best_epoch if mode == "best" else self.rows[-1].epoch

    @property
    def best_epoch(self) -> int:
        """The epoch with the highest validation accuracy, the earliest of equals (0 before any epoch)."""
        if not self.rows:
            return 0
        return self.rows[int(np.argmax([row.val_accuracy for row in self.rows]))].epoch

    @property
    def best_val_accuracy(self) -> float:
        return max((row.val_accuracy for row in self.rows), default=0.0)

    def as_dicts(self) -> list[dict[str, float]]:
        return [row._asdict() for row in self.rows]

    @property
    def kept_row(self) -> dict[str, float]:
        """The figures of the kept epoch, whose weights the model holds: what metrics/train.json reports."""
        return next(row for row in self.rows if row.epoch == self.kept_epoch)._asdict()


def save_checkpoint(
    path: Path,
    *,
    model: Mlp,
    optimizer: Optimizer,
    average: Mlp | None = None,
    epoch: int,
    run_fingerprint: str,
    history: History,
) -> None:
    save_npz(
        path,
        {
            **{f"model/{k}": v for k, v in model.get_arrays().items()},
            **{f"optimizer/{k}": v for k, v in optimizer.state_arrays().items()},
            **{f"average/{k}": v for k, v in (average.get_arrays() if average is not None else {}).items()},
            "epoch": np.array(epoch, np.int64),
            "fingerprint": np.array(run_fingerprint),
            "history": np.array(history.rows, np.float64).reshape(-1, len(HISTORY_COLUMNS)),
            "stopped_early": np.array(history.stopped_early),
            **{f"best/{k}": v for k, v in (history.best_weights or {}).items()},
        },
    )


def checkpoint_spec(model: Mlp, optimizer: Optimizer, *, averaged: bool = False) -> dict[str, ArraySpec]:
    """What a checkpoint of this model and optimizer holds (``save_checkpoint``); the ``best/`` weights are there only
    for
    keep: best.
    """

    def spec(array: np.ndarray) -> ArraySpec:
        return ArraySpec(array.dtype.name, array.shape)

    weights = {name: spec(array) for name, array in model.get_arrays().items()}
    return {
        **{f"model/{name}": value for name, value in weights.items()},
        **{f"optimizer/{name}": spec(array) for name, array in optimizer.state_arrays().items()},
        **({f"average/{name}": value for name, value in weights.items()} if averaged else {}),
        "epoch": ArraySpec("int64", ()),
        "fingerprint": ArraySpec("str", ()),
        "history": ArraySpec("float64", ("epochs", len(HISTORY_COLUMNS))),
        "stopped_early": ArraySpec("bool", ()),
        **{f"best/{name}": value for name, value in weights.items()},
    }


def restore_checkpoint(
    path: Path,
    *,
    model: Mlp,
    optimizer: Optimizer,
    average: Mlp | None = None,
    run_fingerprint: str,
    epochs: int,
    log: Callable[[str], None],
) -> tuple[int, History]:
    """(epochs already done, their history) from ``path`` if it belongs to this run, else (0, empty).

    A checkpoint is only ever a shortcut: one that is damaged, crafted or of
    another run is reported and training starts afresh. Its headers are
    checked before anything is loaded (digits.artifacts), then its values.
    """
    if not path.exists() and not path.is_symlink():
        return 0, History()
    expected = checkpoint_spec(model, optimizer, averaged=average is not None)
    try:
        # first the fingerprint alone: another run's checkpoint holds other shapes, and that is not damage
        fingerprint_header = {name: header for name, header in npz_headers(path).items() if name == "fingerprint"}
        check_npz(path, fingerprint_header, {"fingerprint": expected["fingerprint"]})
        if str(load_npz(path, only=["fingerprint"])["fingerprint"]) != run_fingerprint:
            log(f"train: {path} was made with other params; not resuming it, starting from scratch")
            return 0, History()
        arrays = load_npz(path, expected, optional=[name for name in expected if name.startswith("best/")])
        done, history_rows = int(arrays["epoch"]), arrays["history"]
        if not 0 <= done == len(history_rows) or not np.array_equal(history_rows[:, 0], np.arange(1, done + 1)):
            raise PipelineError(f"{path}: epoch {done} does not match its history of {len(history_rows)} epochs")
    except PipelineError as problem:
        log(f"train: not a usable checkpoint: {problem}; starting from scratch")
        return 0, History()
    if done >= epochs or bool(arrays["stopped_early"]):
        return 0, History()  # a finished run: a forced re-run trains again from the start

    def section(prefix: str) -> dict[str, np.ndarray]:
        return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

    model.set_arrays(section("model/"))
    optimizer.load_state_arrays(section("optimizer/"))
    if average is not None:
        average.set_arrays(section("average/"))
    log(f"train: resuming from {path} after epoch {done} of {epochs}")
    records = [EpochRecord(int(row[0]), *map(float, row[1:])) for row in history_rows]
    return done, History(records, best_weights=section("best/") or None)
