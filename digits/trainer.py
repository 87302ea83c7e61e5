"""The compiled training step and epoch: GradientTape over explicit Variables.

One epoch is one XLA-compiled ``tf.function`` (``jit_compile=True``, the
compiler JAX's ``jit`` uses): the data stays in tensors, each step gathers
its batch by index from a seeded permutation, and a ``tf.while_loop`` runs
every step without returning to Python. Every batch has the same static
shape: the short last batch is padded and masked, so it still counts exactly
its real examples, and XLA compiles the epoch once. digits.runtime chooses how
XLA spreads the step over the CPU cores.

What a step does to its batch besides the plain update (augmentation,
dropout, label smoothing, max-norm: ``Regularization``) lives in modules of
its own (digits.augment, digits.dropout, digits.regularizers); the step only
hands them each example's index and the epoch, which seed their randomness.

The epoch also watches the loss: the first non-finite batch loss stops it and
is reported in its ``EpochResult``; digits.training's ``fit`` turns that into
an error. digits.distributed_trainer runs the same step on every replica of a
tf.distribute strategy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from digits.runtime import tf

import numpy as np

from digits.augment import augment, is_identity
from digits.averaging import WeightAverage
from digits.data import Split
from digits.dropout import dropout
from digits.errors import PipelineError
from digits.fusion import materialised
from digits.model import EVAL_BATCH, Mlp
from digits.optimizers import Optimizer
from digits.params import AugmentParams, TrainParams
from digits.reductions import fixed_mean, fixed_sum, softmax_cross_entropy
from digits.regularizers import max_norm, smooth_labels


def per_example_loss(name: str, labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Loss of each example (N,): softmax cross-entropy on logits, or MSE of logits vs one-hot.

    Averaging over the batch happens in the caller: the seeds that took the
    gradient of this vector directly were summing gradients over the batch.
    """
    if name == "cross_entropy":
        return softmax_cross_entropy(labels, logits)
    if name == "mse":
        return fixed_mean(tf.square(labels - logits), axis=-1)
    raise PipelineError(f"train.loss = {name!r}: allowed are cross_entropy, mse")


@dataclass(frozen=True)
class Regularization:
    """What training does to a batch besides the plain step; the defaults are all off.

    Augmentation, dropout masks and label smoothing change what the step
    sees, max-norm constrains the weights after it. The random parts are
    functions of (seed, epoch, example index): digits.augment, digits.dropout.
    """

    augment: AugmentParams | None = None
    background: float = 0.0  # the scaled value of a blank pixel, for pixels an augmentation moves in
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    dropout_seed: int = 0
    label_smoothing: float = 0.0
    max_norm: float | None = None

    @classmethod
    def from_params(cls, train: TrainParams, augment: AugmentParams, *, background: float) -> Regularization:
        return cls(
            augment=None if is_identity(augment) else augment,
            background=background,
            dropout_input=train.dropout_input,
            dropout_hidden=train.dropout_hidden,
            dropout_seed=train.dropout_seed,
            label_smoothing=train.label_smoothing,
            max_norm=train.max_norm,
        )


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    diverged_step: int  # -1 when every step's loss was finite
    diverged_loss: float


class Trainer:
    """Compiled train epoch and evaluation for one model, optimizer and loss."""

    def __init__(
        self,
        model: Mlp,
        optimizer: Optimizer,
        *,
        loss: str,
        batch_size: int,
        regularization: Regularization = Regularization(),
        average: WeightAverage | None = None,
    ) -> None:
        self.model, self.optimizer, self.loss, self.batch_size = model, optimizer, loss, batch_size
        self.regularization, self.average = regularization, average
        per_example_loss(loss, tf.zeros([1, 1]), tf.zeros([1, 1]))  # reject an unknown loss now, not mid-trace
        pixels, classes = model.layer_sizes[0], model.layer_sizes[-1]
        images_spec = tf.TensorSpec([None, pixels], tf.float32)
        labels_spec = tf.TensorSpec([None, classes], tf.float32)
        self._train_epoch = tf.function(
            self._epoch_graph,
            jit_compile=True,
            input_signature=[images_spec, labels_spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)],
        )
        # Compiled like the epoch: TensorFlow's own kernels would make the validation curve depend on the CPU.
        self._evaluate = tf.function(self._evaluate_graph, jit_compile=True, input_signature=[images_spec, labels_spec])
        self._resident: tuple[Split, tf.Tensor, tf.Tensor] | None = None

    def resident_tensors(self, split: Split) -> tuple[tf.Tensor, tf.Tensor]:
        """``split`` as tensors, converted once and kept while the same split is trained on.

        Handing the numpy arrays to the compiled epoch converted (copied) all
        55,000 images on every call: 0.15 s an epoch on the 2-core machine.
        """
        if self._resident is None or self._resident[0] is not split:
            self._resident = (split, tf.constant(split.images), tf.constant(split.labels))
        return self._resident[1], self._resident[2]

    def train_step(
        self,
        images: tf.Tensor,
        labels: tf.Tensor,
        mask: tf.Tensor | None = None,
        *,
        indices: tf.Tensor | None = None,
        epoch: tf.Tensor | int = 0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """One SGD step on a batch: (mean loss, number correct).

        ``mask`` (N,) of 1.0/0.0 marks the real examples of a padded batch:
        the loss is the mean over those alone, padding gets a zero gradient
        and is not counted as correct, so a padded batch trains exactly like
        the unpadded short one (to float rounding). ``indices`` (the examples'
        places in the training split, default 0..N-1) and ``epoch`` seed the
        augmentation and dropout of each example.
        """
        indices = tf.range(tf.shape(images)[0]) if indices is None else indices
        with tf.GradientTape() as tape:
            logits, losses = self.forward(images, labels, indices=indices, epoch=epoch)
            loss = (
                fixed_mean(losses, axis=0) if mask is None else fixed_sum(losses * mask, axis=0) / tf.reduce_sum(mask)
            )
        gradients = tape.gradient(loss, self.model.parameters)
        self.update(gradients)
        return loss, count_correct(labels, logits, mask)

    def forward(
        self, images: tf.Tensor, labels: tf.Tensor, *, indices: tf.Tensor, epoch: tf.Tensor | int
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """(logits, per-example losses) of a training batch: augmented, dropped out and smoothed as configured."""
        settings = self.regularization
        if settings.augment is not None:
            images = augment(
                images, settings=settings.augment, epoch=epoch, indices=indices, background=settings.background
            )
        dropping = settings.dropout_input or settings.dropout_hidden

        def layer_input(inputs: tf.Tensor, layer: int) -> tf.Tensor:
            if dropping:
                rate = settings.dropout_input if layer == 0 else settings.dropout_hidden
                inputs = dropout(
                    inputs, rate=rate, seed=settings.dropout_seed, epoch=epoch, indices=indices, layer=layer
                )
            # A hidden layer's input is stored once (digits.fusion): its matmul reads it, and its weight gradient reads
            # it transposed. Left to itself XLA recomputed it inside that transpose from the previous matmul's pieces
            # and bias, all read with a stride: a tenth of the 1024-1024 net's epoch (docs/speed.md).
            return inputs if layer == 0 else materialised(inputs)

        logits = self.model(images, layer_input=layer_input)
        return logits, per_example_loss(self.loss, smooth_labels(labels, settings.label_smoothing), logits)

    def update(self, gradients: list[tf.Tensor]) -> None:
        """The optimizer's in-place step, then the max-norm constraint if set, then the weight average if kept."""
        self.optimizer.apply(gradients, self.model.parameters)
        if self.regularization.max_norm is not None:
            for weight in self.model.weights:
                weight.assign(max_norm(weight, self.regularization.max_norm))
        if self.average is not None:
            self.average.update(self.model.parameters, updates=self.optimizer.iterations - 1)

    @property
    def result_model(self) -> Mlp:
        """The network a run produces: the weight average when ``train.ema_decay`` is on, else the trained weights.

        It is what validation measures, what ``train.keep: best`` compares and what is saved.
        """
        return self.model if self.average is None else self.average.model

    @property
    def state(self) -> list[tf.Variable]:
        """Every Variable a run's state is made of: weights, optimizer state and the weight average."""
        averaged = [] if self.average is None else self.average.model.parameters
        return [*self.model.parameters, *self.optimizer.variables, *averaged]

    def _epoch_graph(self, images, labels, order, epoch):
        size = tf.size(order)
        num_steps = (size + self.batch_size - 1) // self.batch_size
        padded_order = tf.pad(order, [[0, num_steps * self.batch_size - size]])  # index 0 fills the last batch

        def train_batch(step):
            start = step * self.batch_size
            batch = tf.slice(padded_order, [start], [self.batch_size])
            mask = tf.cast(start + tf.range(self.batch_size) < size, tf.float32)
            loss, correct = self.train_step(
                tf.gather(images, batch), tf.gather(labels, batch), mask, indices=batch, epoch=epoch
            )
            return loss, tf.cast(correct, tf.float32), tf.reduce_sum(mask)

        return self._epoch_loop(num_steps, train_batch)

    def _epoch_loop(self, num_steps, train_batch):
        """Run ``train_batch(step) -> (mean loss, correct, size)`` for every step, stopping at the first non-finite
        loss.
        """
        loss_sum, correct, seen = tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)
        diverged_step, diverged_loss = tf.constant(-1), tf.constant(0.0)
        step = tf.constant(0)
        while step < num_steps and diverged_step < 0:
            batch_loss, batch_correct, batch_size = train_batch(step)
            if tf.math.is_finite(batch_loss):
                loss_sum += batch_loss * batch_size
                correct += batch_correct
                seen += batch_size
            else:
                diverged_step, diverged_loss = step, batch_loss
            step += 1
        seen = tf.maximum(seen, 1.0)
        return loss_sum / seen, correct / seen, diverged_step, diverged_loss

    def train_epoch(self, split: Split, order: np.ndarray, *, epoch: int = 1) -> EpochResult:
        loss, accuracy, step, bad_loss = self._train_epoch(
            *self.resident_tensors(split), order, tf.constant(epoch, tf.int32)
        )
        return EpochResult(float(loss), float(accuracy), int(step), float(bad_loss))

    def _evaluate_graph(self, images, labels):
        logits = self.result_model(images)
        return per_example_loss(self.loss, labels, logits), count_correct(labels, logits)

    def agree_on_start(self, start: int) -> int:
        """The epoch to continue after; one process has nothing to agree with."""
        return start

    def evaluate(self, split: Split) -> tuple[float, float]:
        """(mean loss, accuracy) over a whole split, in chunks of EVAL_BATCH.

        The per-example losses are summed by ``math.fsum``, correctly rounded
        and so independent of any order (digits.reductions).
        """
        losses, correct = [], 0
        for start in range(0, len(split), EVAL_BATCH):
            chunk_losses, chunk_correct = self._evaluate(
                split.images[start : start + EVAL_BATCH], split.labels[start : start + EVAL_BATCH]
            )
            losses.extend(chunk_losses.numpy().tolist())
            correct += int(chunk_correct)
        return math.fsum(losses) / len(split), correct / len(split)


def count_correct(labels: tf.Tensor, logits: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """How many argmax predictions match the one-hot labels (both argmax give int64), among the unmasked examples."""
    matches = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    if mask is not None:
        matches = tf.logical_and(matches, mask > 0)
    return tf.reduce_sum(tf.cast(matches, tf.int32))
