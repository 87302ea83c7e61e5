"""Stage 2: train the explicit-Variable network on data/prepared/.

Reads ``model`` and ``train`` params, builds the network (digits.model) and
optimizer (digits.optimizers), runs the compiled GradientTape loop
(digits.training), and writes the raw weights (the export stage turns
them into the SavedModel), the per-epoch curves and metrics/train.json (those two after every epoch,
so a running experiment shows its progress). A checkpoint after every epoch
(models/checkpoint.npz, a ``persist`` output) lets a killed run resume.

With ``hardware.distribute`` set, the same loop runs under a tf.distribute
strategy (digits.distribute); in a multi-worker cluster every worker runs
this stage, and only the chief's files land in models/, metrics/, plots/.

``--member K`` trains committee member K instead (digits.committee): the
same recipe with every seed moved by K, written under members/K/.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from digits.runtime import tf  # before any other TensorFlow import: quiet start-up, XLA flags

import numpy as np

from digits.artifacts import check_writable, write_csv, write_json
from digits.augment import augment, is_identity
from digits.checkpoints import HISTORY_COLUMNS, History, fingerprint
from digits.committee import member_params, member_root
from digits.data import Split, load_split
from digits.distribute import check_same_run, describe, make_strategy, output_root
from digits.errors import PipelineError, run_main
from digits.memory import check_fits_in_memory
from digits.model import save_weights, weights_digest
from digits.params import AugmentParams, load_params
from digits.paths import MODELS_DIR, WEIGHTS
from digits.plots import draw_augmented_grid
from digits.trainer import Regularization
from digits.training import Checkpointing, build_trainer, fit

CHECKPOINT = MODELS_DIR / "checkpoint.npz"
METRICS = Path("metrics/train.json")
HISTORY = Path("plots/train_history.csv")
AUGMENTED = Path("plots/augmented.png")
AUGMENTED_SHOWN, EPOCHS_SHOWN = 10, 7


def draw_augmented_samples(path: Path, *, train: Split, settings: AugmentParams, scale: list[float]) -> None:
    """The first training image of each digit, and how augmentation draws it in epochs 1 to EPOCHS_SHOWN."""
    indices = np.array(
        [np.flatnonzero(train.classes == digit)[0] for digit in np.unique(train.classes)[:AUGMENTED_SHOWN]], np.int32
    )
    originals = train.images[indices]
    if is_identity(settings):
        shown, title = [], "augment: off (every strength is 0); the network trains on these digits as they are"
    else:
        # compiled, as in the training epoch: the same pixels on every machine
        distort = tf.function(
            lambda images, epoch: augment(
                images, settings=settings, epoch=epoch, indices=tf.constant(indices), background=scale[0]
            ),
            jit_compile=True,
        )
        shown = [distort(tf.constant(originals), tf.constant(epoch)).numpy() for epoch in range(1, EPOCHS_SHOWN + 1)]
        title = f"original, then epochs 1-{EPOCHS_SHOWN} as trained on (augment.seed {settings.seed})"
    draw_augmented_grid(path, originals=originals, augmented=shown, scale=scale, title=title)


def write_metrics_and_history(root: Path, *, history: History, epochs: int, parameters: int) -> None:
    """metrics/train.json and plots/train_history.csv for the epochs so far, after every epoch: live, and final after
    the last.

    Written atomically from the checkpointed history, so ``dvc exp show`` and
    ``dvc plots show`` follow a running experiment, and a resumed run ends
    with the uninterrupted run's bytes. (dvclive, DVC's own logger, appends
    to its files instead, which a kill between its append and the checkpoint
    would leave one row ahead of the resume; docs/pipeline.md.)
    """
    kept = history.kept_row
    write_csv(root / HISTORY, HISTORY_COLUMNS, history.rows)
    write_json(
        root / METRICS,
        {
            "epochs": epochs,
            "epochs_run": len(history.rows),
            "parameters": parameters,
            # the kept epoch's figures: what models/ holds (train.keep), or would if the run ended now
            **{key: value for key, value in kept.items() if key != "epoch"},
            "best_epoch": history.best_epoch,
            "best_val_accuracy": history.best_val_accuracy,
            "kept_epoch": history.kept_epoch,
            # the bits of every output depend on these (requirements.txt is a dep of this stage)
            "tensorflow": tf.__version__,
            "numpy": np.__version__,
        },
    )
    signal_step_completed(history.rows[-1].epoch)


def signal_step_completed(epoch: int) -> None:
    """Tell DVC's VS Code extension that an epoch's metrics are written, as dvclive does (under DVC only).

    The extension watches ``.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED`` in the
    repository that started the run (DVC_ROOT, also for queued runs), and
    refreshes its experiments table and plots when it changes.
    """
    root = os.environ.get("DVC_ROOT")
    if not root or not os.environ.get("DVC_STAGE"):
        return
    signal = Path(root) / ".dvc" / "tmp" / "exps" / "run" / "DVCLIVE_STEP_COMPLETED"
    try:
        signal.parent.mkdir(parents=True, exist_ok=True)
        signal.write_text(json.dumps({"pid": os.getpid(), "step": epoch}, sort_keys=True))
    except OSError:
        pass  # a courtesy to an editor: never a reason to stop training


def main() -> None:
    parser = argparse.ArgumentParser(description="Train the network (or a committee member) on data/prepared/.")
    parser.add_argument(
        "--member", type=int, default=0, help="committee member K: every seed moved by K, outputs under members/K/"
    )
    member = parser.parse_args().member
    if member < 0:
        raise PipelineError(
            f"--member {member}: a committee member's number is 1 or more (0, the default, is the pipeline's network)"
        )
    params = member_params(load_params(), member)
    check_fits_in_memory(params)  # a machine's limit, so checked here and not in the schema
    # First, before any other TensorFlow op: the CPU can be split into logical
    # devices, and a cluster joined, only while TensorFlow is uninitialised.
    strategy = make_strategy(params.hardware)
    tf.config.experimental.enable_op_determinism()
    run_fingerprint = fingerprint(params.data, params.model, params.train, params.augment, params.hardware)
    check_same_run(strategy, run_fingerprint)  # multi-worker: every worker has the chief's params

    # Data, model and optimizer (their Variables mirrored when distributed)
    train, val = load_split("train"), load_split("val")
    regularization = Regularization.from_params(params.train, params.augment, background=params.data.scale[0])
    trainer = build_trainer(
        params.model,
        params.train,
        input_size=train.images.shape[1],
        train_size=len(train),
        strategy=strategy,
        regularization=regularization,
    )
    model = trainer.model
    print(
        f"train{f' (committee member {member})' if member else ''}: {len(train)} images, layers "
        f"{list(model.layer_sizes)}, {model.count_parameters()} parameters, {describe(strategy)}"
    )

    with output_root(strategy) as top:
        root = top / member_root(member)
        # An output that could not be written fails now, not after hours of training
        check_writable(*(root / path for path in (CHECKPOINT, WEIGHTS, HISTORY, AUGMENTED, METRICS)))

        # Train, checkpointing every epoch
        started = time.perf_counter()
        history = fit(
            trainer,
            train=train,
            val=val,
            settings=params.train,
            checkpoint=Checkpointing(root / CHECKPOINT, run_fingerprint),
            divergence_hints=f"(train.lr = {params.train.lr}, data.scale = {params.data.scale}, model.init = "
            f"{params.model.init})",
            after_epoch=lambda so_far: write_metrics_and_history(
                root, history=so_far, epochs=params.train.epochs, parameters=model.count_parameters()
            ),
        )
        kept = history.kept_row
        print(
            f"train: {len(history.rows)} epochs in {time.perf_counter() - started:.1f} s; keeping epoch "
            f"{history.kept_epoch} "
            f"(val accuracy {kept['val_accuracy']:.4f}); weights sha256 {weights_digest(model)}"
        )

        # Outputs: the weights, what training saw
        save_weights(model, root / WEIGHTS)
        draw_augmented_samples(root / AUGMENTED, train=train, settings=params.augment, scale=params.data.scale)
        # (metrics/train.json and plots/train_history.csv were written after the last epoch, by fit's after_epoch)


if __name__ == "__main__":
    run_main(main)
