"""Reference stage: the same network and recipe as a keras.Sequential, trained with fit().

Same hidden sizes, activation, loss, optimizer, learning-rate schedule
(warm-up included), batch, epochs and prepared data as ``train``, the very
same initial weights (copied in from digits.model.initial_arrays), and the
same regularisation in Keras' own terms: Dropout layers, an L2
kernel_regularizer (or AdamW), a MaxNorm constraint, label smoothing,
EarlyStopping for ``keep: best`` and ``patience``, and Keras' augmentation
layers. It writes metrics/baseline.json with the keys of
metrics/evaluate.json, so ``dvc metrics show`` puts the hand-built loop and
Keras side by side. Where Keras differs from digits.augment (separate
resamplings, per-batch random streams, a normal rather than uniform
elastic field), ``augmentation_layers`` says so.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from digits.runtime import tf  # first, before keras imports TensorFlow: quiet start-up

import keras  # noqa: E402

from digits.artifacts import write_json  # noqa: E402
from digits.data import load_split, steps_per_epoch
from digits.errors import run_main
from digits.idx import NUM_CLASSES
from digits.metrics import classification_metrics
from digits.augment import SIDE, is_identity
from digits.model import EVAL_BATCH, initial_arrays
from digits.optimizers import LearningRate
from digits.params import AugmentParams, ModelParams, TrainParams, load_params
from digits.regularizers import smooth_labels

METRICS = Path("metrics/baseline.json")


class ElasticTransform(keras.layers.Layer):
    """Simard's elastic distortion with Keras' own ``keras.ops.image.elastic_transform``, in training only.

    keras.layers.RandomElasticTransform ties alpha to sigma (alpha = 2 sigma
    on 28x28); this layer passes both. Keras' field is normal noise times
    sigma (std sigma) where Simard and digits.augment draw uniform(-1, 1)
    (std 1/sqrt 3), so alpha is divided by sigma * sqrt 3 for the same
    displacement size. (Keras also draws the same field for x and y, so its
    displacements all run along the diagonal.)
    """

    def __init__(self, *, alpha: float, sigma: float, background: float, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.background = alpha / (sigma * math.sqrt(3.0)), sigma, background
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        return keras.ops.image.elastic_transform(images, alpha=self.alpha, sigma=self.sigma, fill_mode="constant",
                                                 fill_value=self.background, seed=self.seed_generator)


def augmentation_layers(settings: AugmentParams, *, background: float) -> list[keras.layers.Layer]:
    """Keras' augmentation layers closest to digits.augment, active in fit() only.

    Differences: each layer resamples the image again (digits.augment
    resamples once), Keras' zoom and shear factors are fractions of the
    image rather than a scale factor and degrees (converted here), and the
    random streams are Keras' own per batch, not per example index.
    """
    fill = {"fill_mode": "constant", "fill_value": background, "seed": settings.seed}
    layers: list[keras.layers.Layer] = [keras.layers.Reshape((SIDE, SIDE, 1))]
    if settings.rotation:
        layers.append(keras.layers.RandomRotation(settings.rotation / 360.0, **fill))
    if settings.scale:
        layers.append(keras.layers.RandomZoom((-settings.scale, settings.scale), **fill))
    if settings.shift:
        layers.append(keras.layers.RandomTranslation(settings.shift / SIDE, settings.shift / SIDE, **fill))
    if settings.shear:
        layers.append(keras.layers.RandomShear(x_factor=math.tan(math.radians(settings.shear)), **fill))
    if settings.elastic_alpha:
        layers.append(ElasticTransform(alpha=settings.elastic_alpha, sigma=settings.elastic_sigma, background=background, seed=settings.seed))
    return [*layers, keras.layers.Flatten()]


def build_keras_model(params: ModelParams, *, input_size: int, train: TrainParams | None = None,
                      augment: AugmentParams | None = None, background: float = 0.0) -> keras.Sequential:
    """Dense layers mirroring digits.model.Mlp, initialised with its exact starting weights, with the recipe's regularisation."""
    layer_sizes = [input_size, *params.hidden, NUM_CLASSES]
    model = keras.Sequential([keras.Input((input_size,))])
    if augment is not None and not is_identity(augment):
        for layer in augmentation_layers(augment, background=background):
            model.add(layer)
    dense = {}
    if train is not None:
        if train.weight_decay and train.optimizer != "adam":  # L2 coupled to the gradient; adam uses AdamW instead
            dense["kernel_regularizer"] = keras.regularizers.L2(train.weight_decay / 2.0)  # gradient wd * W, as digits.optimizers
        if train.max_norm is not None:
            dense["kernel_constraint"] = keras.constraints.MaxNorm(train.max_norm, axis=0)
    rates = [train.dropout_input, *[train.dropout_hidden] * len(params.hidden)] if train is not None else [0.0] * (len(params.hidden) + 1)
    for layer, size in enumerate([*params.hidden, None]):
        if rates[layer]:
            model.add(keras.layers.Dropout(rates[layer], seed=train.dropout_seed + layer))
        if size is None:
            model.add(keras.layers.Dense(NUM_CLASSES, **dense))  # logits, like Mlp
        else:
            model.add(keras.layers.Dense(size, activation=params.activation, **dense))
    model.set_weights(initial_arrays(layer_sizes, params))
    return model


class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """digits.optimizers.LearningRate (warm-up, then constant, exponential or cosine) as a Keras schedule: the very same formula."""

    def __init__(self, rate: LearningRate) -> None:
        self.rate = rate

    def __call__(self, step):
        return self.rate(step)


def keras_optimizer(params: TrainParams, *, steps: int) -> keras.optimizers.Optimizer:
    """The Keras optimizer equivalent to digits.optimizers.make_optimizer, on the same learning-rate schedule."""
    lr = KerasSchedule(LearningRate(lr=params.lr, schedule=params.lr_schedule, decay_rate=params.lr_decay_rate, steps_per_epoch=steps,
                                    total_steps=steps * params.epochs, warmup_steps=steps * params.warmup_epochs))
    if params.optimizer == "momentum":
        return keras.optimizers.SGD(lr, momentum=params.momentum, nesterov=params.nesterov)
    if params.optimizer == "adam" and params.weight_decay:
        return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay)
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
    model = build_keras_model(params.model, input_size=train.images.shape[1], train=params.train, augment=params.augment,
                              background=params.data.scale[0])
    steps = steps_per_epoch(len(train), params.train.batch_size)
    # steps_per_execution: Keras runs 32 steps per call into its compiled train function
    model.compile(optimizer=keras_optimizer(params.train, steps=steps), loss=keras_loss(params.train.loss), metrics=["accuracy"],
                  steps_per_execution=32)

    # Train with Keras' own loop; EarlyStopping does keep: best and patience
    selection = []
    if params.train.keep == "best" or params.train.patience is not None:
        selection.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=params.train.patience or params.train.epochs,
                                                       restore_best_weights=params.train.keep == "best"))
    targets = smooth_labels(train.labels, params.train.label_smoothing)  # the loss sees smoothed targets, as in train
    model.fit(train.images, targets, batch_size=params.train.batch_size, epochs=params.train.epochs, callbacks=selection,
              validation_data=(val.images, val.labels), shuffle=True, verbose=1 if sys.stdout.isatty() else 2)

    # Score exactly as evaluate does
    logits = model.predict(test.images, batch_size=EVAL_BATCH, verbose=0)
    metrics = classification_metrics(test.classes, logits)
    write_json(METRICS, metrics)
    print(f"baseline: keras fit test accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}")


if __name__ == "__main__":
    run_main(main)
