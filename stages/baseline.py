"""Reference stage: the same network and recipe as a keras.Sequential, trained with fit().

Same hidden sizes, activation, loss, optimizer, learning-rate schedule
(warm-up included), batch, epochs and prepared data as ``train``, the very
same initial weights (copied in from digits.model.initial_arrays), and the
same regularisation in Keras' own terms: Dropout layers, an L2
kernel_regularizer (or AdamW), a MaxNorm constraint, label smoothing,
EarlyStopping for ``keep: best`` and ``patience``, and Keras' augmentation
layers (the model: digits.keras_reference). It writes metrics/baseline.json
with the keys of metrics/evaluate.json, so ``dvc metrics show`` puts the
hand-built loop and Keras side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

from digits.runtime import tf  # first, before keras imports TensorFlow: quiet start-up

import keras

from digits.artifacts import write_json
from digits.data import load_split, steps_per_epoch
from digits.errors import run_main
from digits.keras_reference import build_keras_model, keras_loss, keras_optimizer
from digits.memory import check_fits_in_memory
from digits.metrics import classification_metrics
from digits.model import EVAL_BATCH
from digits.params import load_params
from digits.regularizers import smooth_labels

METRICS = Path("metrics/baseline.json")


def main() -> None:
    params = load_params()
    check_fits_in_memory(params)
    keras.utils.set_random_seed(params.train.shuffle_seed)
    tf.config.experimental.enable_op_determinism()

    # Data and model
    train, val, test = load_split("train"), load_split("val"), load_split("test")
    model = build_keras_model(
        params.model,
        input_size=train.images.shape[1],
        train=params.train,
        augment=params.augment,
        background=params.data.scale[0],
    )
    steps = steps_per_epoch(len(train), params.train.batch_size)
    # steps_per_execution: Keras runs 32 steps per call into its compiled train function
    model.compile(
        optimizer=keras_optimizer(params.train, steps=steps),
        loss=keras_loss(params.train.loss),
        metrics=["accuracy"],
        steps_per_execution=32,
    )

    # Train with Keras' own loop; EarlyStopping does keep: best and patience
    selection = []
    if params.train.keep == "best" or params.train.patience is not None:
        selection.append(
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                patience=params.train.patience or params.train.epochs,
                restore_best_weights=params.train.keep == "best",
            )
        )
    targets = smooth_labels(train.labels, params.train.label_smoothing)  # the loss sees smoothed targets, as in train
    history = model.fit(
        train.images,
        targets,
        batch_size=params.train.batch_size,
        epochs=params.train.epochs,
        callbacks=selection,
        validation_data=(val.images, val.labels),
        shuffle=True,
        verbose=1 if sys.stdout.isatty() else 2,
    )
    epochs_run = len(history.history["loss"])
    kept = selection[0].best_epoch + 1 if params.train.keep == "best" else epochs_run
    print(f"baseline: {epochs_run} of {params.train.epochs} epochs, keeping epoch {kept}")

    # Score exactly as evaluate does
    logits = model.predict(test.images, batch_size=EVAL_BATCH, verbose=0)
    metrics = classification_metrics(test.classes, logits)
    write_json(METRICS, metrics)
    print(f"baseline: keras fit test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    run_main(main)
