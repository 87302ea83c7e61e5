"""In-place update rules for the explicit Variables, one small class each.

Every rule ends in ``variable.assign_sub(...)``: the Variable object stays the
same, so the GradientTape keeps watching it (seed 002's ``w = w - lr * g``
replaced it with a Tensor). Slot variables (momentum, running averages) and
the step counter are exposed as arrays so a checkpoint can save and restore
them exactly. Formulas and defaults follow Keras, so the baseline stage's
Keras optimizers are the same algorithms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from digits.runtime import tf

import numpy as np

from digits.fixed_math import power, sin_cos
from digits.params import TrainParams
from digits.variables import replicated_variable

EPSILON = 1e-7


class LearningRate:
    """lr as a function of the global step: an optional linear warm-up, then constant, exponential per epoch, or cosine
    to 0.

    During ``warmup_steps`` the rate climbs linearly to ``lr`` (step k gets
    lr * (k + 1) / warmup_steps); the schedule then runs over the remaining
    steps, so cosine still reaches 0 at the last step.
    """

    def __init__(
        self,
        *,
        lr: float,
        schedule: str,
        decay_rate: float,
        steps_per_epoch: int,
        total_steps: int,
        warmup_steps: int = 0,
    ) -> None:
        self.lr, self.schedule, self.decay_rate, self.warmup_steps = lr, schedule, decay_rate, warmup_steps
        self.steps_per_epoch, self.total_steps = max(1, steps_per_epoch), max(1, total_steps - warmup_steps)

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        if self.warmup_steps == 0:
            return self.scheduled(step)
        warming = tf.cast(step + 1, tf.float32) * (self.lr / self.warmup_steps)
        return tf.where(step < self.warmup_steps, warming, self.scheduled(step - self.warmup_steps))

    def scheduled(self, step: tf.Tensor) -> tf.Tensor:
        step = tf.cast(step, tf.float32)
        if self.schedule == "exponential":
            return self.lr * power(self.decay_rate, step / self.steps_per_epoch)
        if self.schedule == "cosine":
            progress = tf.minimum(step, self.total_steps) / self.total_steps
            return self.lr * 0.5 * (1.0 + sin_cos(math.pi * progress)[1])
        return tf.constant(self.lr, tf.float32)


class Optimizer:
    """Base class: owns the step counter, per-variable slots and weight decay.

    Weight decay applies to weight matrices only, never to biases. For SGD,
    momentum and RMSprop it is L2 regularisation, coupled to the gradient
    (g += weight_decay * W, the gradient of weight_decay/2 * |W|^2); Adam
    decouples it as AdamW does (W -= lr * weight_decay * W before the Adam
    step), because L2 through Adam's per-weight scaling barely regularises
    (Loshchilov & Hutter 2019).
    """

    slot_names: tuple[str, ...] = ()
    decoupled_weight_decay = False

    def __init__(
        self, variables: Sequence[tf.Variable], learning_rate: LearningRate, *, weight_decay: float = 0.0
    ) -> None:
        self.learning_rate, self.weight_decay = learning_rate, weight_decay
        self.iterations = replicated_variable(tf.constant(0, tf.int64), name="iterations", trainable=False)
        self.slots = {
            slot: [
                replicated_variable(tf.zeros_like(v), name=f"{slot}_{i}", trainable=False)
                for i, v in enumerate(variables)
            ]
            for slot in self.slot_names
        }

    @property
    def variables(self) -> list[tf.Variable]:
        """The step counter and every slot: what a checkpoint saves besides the model."""
        return [self.iterations, *(variable for variables in self.slots.values() for variable in variables)]

    def apply(self, gradients: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> None:
        lr = self.learning_rate(self.iterations)
        for i, (gradient, variable) in enumerate(zip(gradients, variables)):
            if self.weight_decay and variable.shape.rank == 2:  # a weight matrix
                if self.decoupled_weight_decay:
                    variable.assign_sub(lr * self.weight_decay * variable)
                else:
                    gradient = gradient + self.weight_decay * variable
            self.update(i, gradient, variable, lr)
        self.iterations.assign_add(1)

    def update(self, i: int, gradient: tf.Tensor, variable: tf.Variable, lr: tf.Tensor) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, np.ndarray]:
        state = {"iterations": self.iterations.numpy()}
        for slot, variables in self.slots.items():
            state.update({f"{slot}_{i}": v.numpy() for i, v in enumerate(variables)})
        return state

    def load_state_arrays(self, state: dict[str, np.ndarray]) -> None:
        self.iterations.assign(state["iterations"])
        for slot, variables in self.slots.items():
            for i, v in enumerate(variables):
                v.assign(state[f"{slot}_{i}"])


class Sgd(Optimizer):
    """w -= lr * g: the seeds' update."""

    def update(self, i, gradient, variable, lr):
        variable.assign_sub(lr * gradient)


class Momentum(Optimizer):
    """m = mu * m + g;  w -= lr * m (heavy-ball momentum), or w -= lr * (g + mu * m) with Nesterov's look-ahead.

    The Nesterov form is Sutskever et al.'s (2013) reformulation, the one
    Keras' SGD(nesterov=True) and PyTorch use.
    """

    slot_names = ("momentum",)

    def __init__(
        self, variables, learning_rate, *, momentum: float, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        super().__init__(variables, learning_rate, weight_decay=weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, i, gradient, variable, lr):
        velocity = self.slots["momentum"][i]
        velocity.assign(self.momentum * velocity + gradient)
        variable.assign_sub(lr * (gradient + self.momentum * velocity) if self.nesterov else lr * velocity)


class RmsProp(Optimizer):
    """s = rho * s + (1 - rho) * g^2;  w -= lr * g / sqrt(s + eps) (Keras' rmsprop, rho 0.9)."""

    slot_names = ("mean_square",)
    rho = 0.9

    def update(self, i, gradient, variable, lr):
        mean_square = self.slots["mean_square"][i]
        mean_square.assign(self.rho * mean_square + (1.0 - self.rho) * tf.square(gradient))
        variable.assign_sub(lr * gradient / tf.sqrt(mean_square + EPSILON))


class Adam(Optimizer):
    """Bias-corrected first and second moments (beta1 0.9, beta2 0.999)."""

    slot_names = ("m", "v")
    beta_1, beta_2 = 0.9, 0.999
    decoupled_weight_decay = True

    def update(self, i, gradient, variable, lr):
        m, v = self.slots["m"][i], self.slots["v"][i]
        t = tf.cast(self.iterations + 1, tf.float32)
        m.assign(self.beta_1 * m + (1.0 - self.beta_1) * gradient)
        v.assign(self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient))
        corrected_lr = lr * tf.sqrt(1.0 - power(self.beta_2, t)) / (1.0 - power(self.beta_1, t))
        variable.assign_sub(corrected_lr * m / (tf.sqrt(v) + EPSILON))


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": Sgd, "momentum": Momentum, "rmsprop": RmsProp, "adam": Adam}


def learning_rate(params: TrainParams, *, steps_per_epoch: int) -> LearningRate:
    """The schedule ``train`` asks for (warm-up, then constant, exponential or cosine); the Keras baseline shares it."""
    return LearningRate(
        lr=params.lr,
        schedule=params.lr_schedule,
        decay_rate=params.lr_decay_rate,
        steps_per_epoch=steps_per_epoch,
        total_steps=steps_per_epoch * params.epochs,
        warmup_steps=steps_per_epoch * params.warmup_epochs,
    )


def decoupled_weight_decay(optimizer: str) -> bool:
    """Whether ``train.weight_decay`` is decoupled from the gradient (AdamW) rather than L2 added to it."""
    return OPTIMIZERS[optimizer].decoupled_weight_decay


def make_optimizer(params: TrainParams, variables: Sequence[tf.Variable], *, steps_per_epoch: int) -> Optimizer:
    """The optimizer named by ``train.optimizer`` with its learning-rate schedule."""
    schedule = learning_rate(params, steps_per_epoch=steps_per_epoch)
    if params.optimizer == "momentum":
        return Momentum(
            variables, schedule, momentum=params.momentum, nesterov=params.nesterov, weight_decay=params.weight_decay
        )
    return OPTIMIZERS[params.optimizer](variables, schedule, weight_decay=params.weight_decay)
