"""The Keras reference: the same network and recipe as digits.model and digits.training, in Keras' own terms.

What the ``baseline`` stage trains with ``fit()`` and what benchmarks/train_speed.py
times: Dense layers with the very same initial weights
(digits.model.initial_arrays), the same learning-rate schedule
(digits.optimizers.learning_rate as a Keras schedule) and the same
weight-decay rule (L2 coupled to the gradient, or AdamW), Dropout layers,
a MaxNorm constraint, and Keras' augmentation layers. Where Keras differs
from digits.augment (separate resamplings, per-batch random streams, a
normal rather than uniform elastic field), ``augmentation_layers`` says so.
"""

from __future__ import annotations

import math

from digits.runtime import tf  # noqa: F401 - first, before keras imports TensorFlow: quiet start-up

import keras

from digits.augment import is_identity
from digits.mnist import IMAGE_SIDE, NUM_CLASSES
from digits.model import initial_arrays
from digits.optimizers import LearningRate, decoupled_weight_decay, learning_rate
from digits.params import AugmentParams, ModelParams, TrainParams


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
        return keras.ops.image.elastic_transform(
            images,
            alpha=self.alpha,
            sigma=self.sigma,
            fill_mode="constant",
            fill_value=self.background,
            seed=self.seed_generator,
        )


def augmentation_layers(settings: AugmentParams, *, background: float) -> list[keras.layers.Layer]:
    """Keras' augmentation layers closest to digits.augment, active in fit() only.

    Differences: each layer resamples the image again (digits.augment
    resamples once), Keras' zoom and shear factors are fractions of the
    image rather than a scale factor and degrees (converted here), and the
    random streams are Keras' own per batch, not per example index.
    """
    fill = {"fill_mode": "constant", "fill_value": background, "seed": settings.seed}
    layers: list[keras.layers.Layer] = [keras.layers.Reshape((IMAGE_SIDE, IMAGE_SIDE, 1))]
    if settings.rotation:
        layers.append(keras.layers.RandomRotation(settings.rotation / 360.0, **fill))
    if settings.scale:
        layers.append(keras.layers.RandomZoom((-settings.scale, settings.scale), **fill))
    if settings.shift:
        layers.append(keras.layers.RandomTranslation(settings.shift / IMAGE_SIDE, settings.shift / IMAGE_SIDE, **fill))
    if settings.shear:
        layers.append(keras.layers.RandomShear(x_factor=math.tan(math.radians(settings.shear)), **fill))
    if settings.elastic_alpha:
        layers.append(
            ElasticTransform(
                alpha=settings.elastic_alpha, sigma=settings.elastic_sigma, background=background, seed=settings.seed
            )
        )
    return [*layers, keras.layers.Flatten()]


def build_keras_model(
    params: ModelParams,
    *,
    input_size: int,
    train: TrainParams | None = None,
    augment: AugmentParams | None = None,
    background: float = 0.0,
) -> keras.Sequential:
    """Dense layers mirroring digits.model.Mlp, initialised with its exact starting weights, with the recipe's
    regularisation.
    """
    layer_sizes = [input_size, *params.hidden, NUM_CLASSES]
    model = keras.Sequential([keras.Input((input_size,))])
    if augment is not None and not is_identity(augment):
        for layer in augmentation_layers(augment, background=background):
            model.add(layer)
    dense = {}
    if train is not None:
        if train.weight_decay and not decoupled_weight_decay(
            train.optimizer
        ):  # L2 coupled to the gradient; AdamW otherwise
            dense["kernel_regularizer"] = keras.regularizers.L2(
                train.weight_decay / 2.0
            )  # gradient wd * W, as digits.optimizers
        if train.max_norm is not None:
            dense["kernel_constraint"] = keras.constraints.MaxNorm(train.max_norm, axis=0)
    rates = (
        [train.dropout_input, *[train.dropout_hidden] * len(params.hidden)]
        if train is not None
        else [0.0] * (len(params.hidden) + 1)
    )
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
    """digits.optimizers.LearningRate (warm-up, then constant, exponential or cosine) as a Keras schedule: the very same
    formula.
    """

    def __init__(self, rate: LearningRate) -> None:
        self.rate = rate

    def __call__(self, step):
        return self.rate(step)


def keras_optimizer(params: TrainParams, *, steps: int) -> keras.optimizers.Optimizer:
    """The Keras optimizer equivalent to digits.optimizers.make_optimizer, on the same learning-rate schedule."""
    lr = KerasSchedule(learning_rate(params, steps_per_epoch=steps))
    # Keras' own weight average: a fixed decay from the first step (digits.averaging ramps it up), swapped in when fit()
    # ends
    averaging = {"use_ema": True, "ema_momentum": params.ema_decay} if params.ema_decay > 0 else {}
    if params.optimizer == "momentum":
        return keras.optimizers.SGD(lr, momentum=params.momentum, nesterov=params.nesterov, **averaging)
    if params.weight_decay and decoupled_weight_decay(params.optimizer):
        return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay, **averaging)
    return {"sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}[
        params.optimizer
    ](lr, **averaging)


def keras_loss(name: str) -> keras.losses.Loss:
    if name == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.CategoricalCrossentropy(from_logits=True)
