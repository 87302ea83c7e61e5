"""Polyak averaging: an exponential moving average of the weights, the network that is validated, kept and saved.

With ``train.ema_decay`` above 0 every step also moves an averaged copy of
the network toward the weights it just updated:

    decay_t = min(decay, (1 + t) / (10 + t))        (t: updates so far)
    average = average + (1 - decay_t) * (weights - average)

The ramp is tf.train.ExponentialMovingAverage's ``num_updates``: early on the
average follows the weights closely instead of remembering the
initialisation for thousands of steps. The average smooths out the noise
of the last steps' gradients (Polyak & Juditsky 1992), which is worth a few
test errors at the end of a long run with dropout and augmentation.

Like Keras' ``use_ema``, the averaged weights replace the trained ones in
everything downstream: validation, ``train.keep: best`` and the saved
model. The average is a second ``Mlp`` whose Variables are created beside
the model's (in the strategy's scope when distributed); it travels in the
checkpoint, so a resumed run ends with the uninterrupted run's bits.
"""

from __future__ import annotations

from digits.runtime import tf

from digits.model import Mlp

RAMP_OFFSET = 10.0  # decay_t = (1 + t) / (10 + t) until it reaches the decay asked for


def ramped_decay(decay: float, updates: tf.Tensor) -> tf.Tensor:
    """The decay of update number ``updates`` (0-based): min(decay, (1 + t) / (10 + t))."""
    updates = tf.cast(updates, tf.float32)
    return tf.minimum(tf.constant(decay, tf.float32), (1.0 + updates) / (RAMP_OFFSET + updates))


def moving_average(average: tf.Tensor, value: tf.Tensor, decay: tf.Tensor) -> tf.Tensor:
    """One step of the exponential moving average: ``average + (1 - decay) * (value - average)``."""
    return average + (1.0 - decay) * (value - average)


class WeightAverage:
    """The averaged network and its update; create it where the model's Variables are created."""

    def __init__(self, model: Mlp, *, decay: float) -> None:
        self.decay = decay
        self.model = Mlp(model.layer_sizes, activation=model.activation, name="average")
        self.model.set_arrays(model.get_arrays())  # the average starts at the initial weights

    def update(self, parameters: list[tf.Variable], *, updates: tf.Tensor) -> None:
        """Move every averaged Variable toward its parameter, in place (after the optimizer's step)."""
        decay = ramped_decay(self.decay, updates)
        for average, value in zip(self.model.parameters, parameters):
            average.assign(moving_average(average, value, decay))
