"""Reference stage: the same network as a keras.Sequential, trained with fit().

Same hidden sizes, activation, loss, optimizer, learning-rate schedule,
batch, epochs and prepared data as ``train`` — and the very same initial
weights (copied in from digits.model.initial_arrays). It writes
metrics/baseline.json with the keys of metrics/evaluate.json, so
``dvc metrics show`` puts the hand-built loop and Keras side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

from digits.runtime import tf  # first, before keras imports TensorFlow: quiet start-up

import keras  # noqa: E402

from digits.artifacts import write_json  # noqa: E402
from digits.data import load_split
from digits.errors import run_main
from digits.idx import NUM_CLASSES
from digits.metrics import classification_metrics
from digits.model import initial_arrays
from digits.params import ModelParams, TrainParams, load_params
from digits.training import EVAL_BATCH, steps_per_epoch

METRICS = Path("metrics/baseline.json")


def build_keras_model(params: ModelParams, *, input_size: int) -> keras.Sequential:
    """Dense layers mirroring digits.model.Mlp, initialised with its exact starting weights."""
    layer_sizes = [input_size, *params.hidden, NUM_CLASSES]
    model = keras.Sequential([keras.Input((input_size,))])
    for size in params.hidden:
        model.add(keras.layers.Dense(size, activation=params.activation))
    model.add(keras.layers.Dense(NUM_CLASSES))  # logits, like Mlp
    model.set_weights(initial_arrays(layer_sizes, params))
    return model


def keras_optimizer(params: TrainParams, *, steps: int) -> keras.optimizers.Optimizer:
    """The Keras optimizer and schedule equivalent to digits.optimizers.make_optimizer."""
    if params.lr_schedule == "exponential":
        lr = keras.optimizers.schedules.ExponentialDecay(params.lr, decay_steps=steps, decay_rate=params.lr_decay_rate)
    elif params.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(params.lr, decay_steps=steps * params.epochs)
    else:
        lr = params.lr
    if params.optimizer == "momentum":
        return keras.optimizers.SGD(lr, momentum=params.momentum)
    return {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}[params.optimizer](lr)


def keras_loss(name: str) -> keras.losses.Loss:
    if name == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.CategoricalCrossentropy(from_logits=True)


def main() -> None:
    params = load_params()
    keras.utils.set_random_seed(params.train.shuffle_seed)
    tf.config.experimental.enable_op_determinism()

    # Data and model
    train, val, test = load_split("train"), load_split("val"), load_split("test")
    model = build_keras_model(params.model, input_size=train.images.shape[1])
    steps = steps_per_epoch(len(train), params.train.batch_size)
    model.compile(optimizer=keras_optimizer(params.train, steps=steps), loss=keras_loss(params.train.loss), metrics=["accuracy"])

    # Train with Keras' own loop
    model.fit(train.images, train.labels, batch_size=params.train.batch_size, epochs=params.train.epochs,
              validation_data=(val.images, val.labels), shuffle=True, verbose=1 if sys.stdout.isatty() else 2)

    # Score exactly as evaluate does
    logits = model.predict(test.images, batch_size=EVAL_BATCH, verbose=0)
    metrics = classification_metrics(test.classes, logits)
    write_json(METRICS, metrics)
    print(f"baseline: keras fit test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    run_main(main)
