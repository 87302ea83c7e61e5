"""The training loop: ``fit`` runs epochs of a digits.trainer, validates, checkpoints and selects.

``fit`` keeps the last or the best epoch's weights (``train.keep``), or
their moving average (``train.ema_decay``: digits.averaging), and can stop
early (``train.patience``). A non-finite loss raises ``TrainingDiverged``
naming the epoch, the step and the usual causes. After every epoch a
checkpoint (weights, optimizer state, history: digits.checkpoints) is
written atomically, so a killed run resumes where it was; the data order of
an epoch is a pure function of (seed, epoch), so it resumes to the same bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from digits.runtime import tf

import numpy as np
from tqdm import tqdm

from digits.averaging import WeightAverage
from digits.checkpoints import EpochRecord, History, restore_checkpoint, save_checkpoint
from digits.data import Split, steps_per_epoch
from digits.distribute import variable_scope
from digits.distributed_trainer import DistributedTrainer
from digits.errors import PipelineError
from digits.model import Mlp, build_model
from digits.optimizers import make_optimizer
from digits.params import ModelParams, TrainParams
from digits.trainer import Regularization, Trainer


class TrainingDiverged(PipelineError):
    """The loss became NaN or Inf; no model is written."""


def epoch_order(size: int, *, seed: int, epoch: int) -> np.ndarray:
    """The data order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int32)


def build_trainer(
    model_params: ModelParams,
    train_params: TrainParams,
    *,
    input_size: int,
    train_size: int,
    strategy: tf.distribute.Strategy | None,
    regularization: Regularization = Regularization(),
) -> Trainer:
    """A freshly initialised model and optimizer, and the trainer for ``hardware.distribute``.

    Under a strategy the Variables must be created inside its scope, so that
    every replica holds a copy; the initial weights are the same either way.
    """
    with variable_scope(strategy):
        model = build_model(model_params, input_size=input_size)
        optimizer = make_optimizer(
            train_params, model.parameters, steps_per_epoch=steps_per_epoch(train_size, train_params.batch_size)
        )
        average = WeightAverage(model, decay=train_params.ema_decay) if train_params.ema_decay > 0 else None
    settings = {
        "loss": train_params.loss,
        "batch_size": train_params.batch_size,
        "regularization": regularization,
        "average": average,
    }
    if strategy is None:
        return Trainer(model, optimizer, **settings)
    return DistributedTrainer(model, optimizer, strategy=strategy, **settings)


def divergence_message(*, epoch: int, step: int, steps: int, loss: float, hints: str) -> str:
    return (
        f"training diverged: the loss became {loss} at epoch {epoch}, step {step + 1} of {steps}. "
        f"Likely causes: a learning rate too high, unscaled input (pixels should be scaled to a small range), "
        f"or too large an initialisation. {hints} No model was written."
    )


@dataclass(frozen=True)
class Checkpointing:
    """Where ``fit`` writes its per-epoch checkpoint, and the run it belongs to (a resume needs its fingerprint)."""

    path: Path
    run_fingerprint: str


def fit(
    trainer: Trainer,
    *,
    train: Split,
    val: Split,
    settings: TrainParams,
    checkpoint: Checkpointing | None = None,
    divergence_hints: str = "",
    log: Callable[[str], None] = tqdm.write,
    after_epoch: Callable[[History], None] | None = None,
) -> History:
    """Train for ``settings.epochs`` (resuming a matching checkpoint), validating and checkpointing every epoch.

    Of ``settings`` (the ``train`` params), fit reads the run's length and
    model selection: ``epochs``, ``shuffle_seed``, ``keep`` and ``patience``
    (the trainer holds the rest). ``keep = "best"`` leaves the model with the
    weights of the epoch of highest validation accuracy; ``patience`` stops
    the run after that many epochs without a better one. Both survive a
    resume exactly: the best weights travel in the checkpoint. With a weight
    average (``train.ema_decay``, digits.averaging) every epoch validates the
    average, ``keep`` chooses among averages, and the model ends holding one.
    ``after_epoch(history)`` runs after each epoch's checkpoint, and once on a
    resume with the epochs restored: the train stage writes its live metrics
    there.
    """
    epochs, keep, patience = settings.epochs, settings.keep, settings.patience
    start, history = 0, History()
    if checkpoint is not None:
        start, history = restore_checkpoint(
            checkpoint.path,
            model=trainer.model,
            optimizer=trainer.optimizer,
            average=averaged(trainer),
            run_fingerprint=checkpoint.run_fingerprint,
            epochs=epochs,
            log=log,
        )
    start = trainer.agree_on_start(start)
    if history.rows and after_epoch is not None:
        history.keep(keep)
        after_epoch(history)
    steps = steps_per_epoch(len(train), trainer.batch_size)
    with tqdm(total=epochs, initial=start, desc="train", unit="epoch", disable=None, leave=False) as progress:
        for epoch in range(start + 1, epochs + 1):
            result = trainer.train_epoch(
                train, epoch_order(len(train), seed=settings.shuffle_seed, epoch=epoch), epoch=epoch
            )
            if result.diverged_step >= 0:
                raise TrainingDiverged(
                    divergence_message(
                        epoch=epoch,
                        step=result.diverged_step,
                        steps=steps,
                        loss=result.diverged_loss,
                        hints=divergence_hints,
                    )
                )
            val_loss, val_accuracy = trainer.evaluate(val)
            history.append(EpochRecord(epoch, result.loss, result.accuracy, val_loss, val_accuracy))
            history.keep(keep)
            if keep == "best" and history.best_epoch == epoch:
                history.best_weights = trainer.result_model.get_arrays()
            history.stopped_early = patience is not None and epoch < epochs and epoch - history.best_epoch >= patience
            if checkpoint is not None:
                save_checkpoint(
                    checkpoint.path,
                    model=trainer.model,
                    optimizer=trainer.optimizer,
                    average=averaged(trainer),
                    epoch=epoch,
                    run_fingerprint=checkpoint.run_fingerprint,
                    history=history,
                )
            if after_epoch is not None:
                after_epoch(history)
            progress.set_postfix(loss=f"{result.loss:.4f}", acc=f"{result.accuracy:.4f}", val_acc=f"{val_accuracy:.4f}")
            progress.update(1)
            log(
                f"epoch {epoch}/{epochs}: train loss {result.loss:.4f} acc {result.accuracy:.4f} | "
                f"val loss {val_loss:.4f} acc {val_accuracy:.4f}"
            )
            if history.stopped_early:
                log(
                    f"train: stopping early, no better val accuracy for {patience} epochs (best "
                    f"{history.best_val_accuracy:.4f} at epoch {history.best_epoch})"
                )
                break
    if keep == "best":
        trainer.model.set_arrays(history.best_weights)
    elif trainer.average is not None:
        trainer.model.set_arrays(trainer.average.model.get_arrays())
    return history


def averaged(trainer: Trainer) -> Mlp | None:
    """The weight average a checkpoint carries, if the run keeps one."""
    return None if trainer.average is None else trainer.average.model
