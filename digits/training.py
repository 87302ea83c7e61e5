"""The hand-written training loop: GradientTape over explicit Variables.

One epoch is one XLA-compiled ``tf.function`` (``jit_compile=True``, the
compiler JAX's ``jit`` uses): the data stays in tensors, each step gathers
its batch by index from a seeded permutation, and a ``tf.while_loop`` runs
every step without returning to Python. Every batch has the same static
shape: the short last batch is padded and masked, so it still counts exactly
its real examples, and XLA compiles the epoch once. digits.runtime chooses how
XLA spreads the step over the CPU cores.

Under a tf.distribute strategy (``hardware.distribute``, digits.distribute),
``DistributedTrainer`` runs the same step on every replica: each takes its
piece of the global batch from a distributed dataset, the per-example losses
are averaged over the global batch, and the gradients are all-reduced before
the same in-place update.

What a step does to its batch besides the plain update (augmentation,
dropout, label smoothing, max-norm: ``Regularization``) lives in modules of
its own (digits.augment, digits.dropout, digits.regularizers); the step only
hands them each example's index and the epoch, which seed their randomness.
``fit`` keeps the last or the best epoch's weights (``train.keep``), or
their moving average (``train.ema_decay``: digits.averaging), and can stop
early (``train.patience``).

The loop also watches the loss: the first non-finite batch loss stops the
epoch, and ``fit`` raises ``TrainingDiverged`` naming the epoch, the step
and the usual causes. After every epoch a checkpoint (weights, optimizer
state, history: digits.checkpoints) is written atomically, so a killed run
resumes where it was.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digits.runtime import tf
from digits.augment import augment, is_identity
from digits.averaging import WeightAverage
from digits.checkpoints import EpochRecord, History, restore_checkpoint, save_checkpoint
from digits.data import Split, steps_per_epoch
from digits.distribute import chiefs_value, variable_scope
from digits.dropout import dropout
from digits.errors import PipelineError
from digits.model import EVAL_BATCH, Mlp, build_model
from digits.optimizers import Optimizer, make_optimizer
from digits.params import AugmentParams, ModelParams, TrainParams
from digits.reductions import fixed_mean, fixed_sum, softmax_cross_entropy
from digits.regularizers import max_norm, smooth_labels

# Emitted once per traced distributed epoch by tf.data internals; nothing to act on.
warnings.filterwarnings("ignore", message="To make it possible to preserve tf.data options", category=UserWarning)

class TrainingDiverged(PipelineError):
    """The loss became NaN or Inf; no model is written."""


class WorkerLost(PipelineError):
    """A peer in a multi-worker cluster stopped answering mid-epoch."""


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


def epoch_order(size: int, *, seed: int, epoch: int) -> np.ndarray:
    """The data order of one epoch: a pure function of (seed, epoch), so a resumed run sees the same batches."""
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int32)


def replica_pieces(order: np.ndarray, *, batch_size: int, num_replicas: int) -> list[np.ndarray]:
    """Each global batch of ``order`` cut into ``num_replicas`` contiguous pieces, batch after batch.

    Pieces differ in size by at most one, and a short last batch may leave a
    replica an empty piece. Put back together they are exactly the batches of
    the single-device loop, which is why distributed training follows it.
    """
    pieces = []
    for start in range(0, len(order), batch_size):
        pieces += np.array_split(order[start : start + batch_size], num_replicas)
    return pieces


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
        return cls(augment=None if is_identity(augment) else augment, background=background,
                   dropout_input=train.dropout_input, dropout_hidden=train.dropout_hidden, dropout_seed=train.dropout_seed,
                   label_smoothing=train.label_smoothing, max_norm=train.max_norm)


@dataclass
class EpochResult:
    loss: float
    accuracy: float
    diverged_step: int  # -1 when every step's loss was finite
    diverged_loss: float


class Trainer:
    """Compiled train epoch and evaluation for one model, optimizer and loss."""

    def __init__(self, model: Mlp, optimizer: Optimizer, *, loss: str, batch_size: int,
                 regularization: Regularization = Regularization(), average: WeightAverage | None = None) -> None:
        self.model, self.optimizer, self.loss, self.batch_size = model, optimizer, loss, batch_size
        self.regularization, self.average = regularization, average
        per_example_loss(loss, tf.zeros([1, 1]), tf.zeros([1, 1]))  # reject an unknown loss now, not mid-trace
        pixels, classes = model.layer_sizes[0], model.layer_sizes[-1]
        images_spec = tf.TensorSpec([None, pixels], tf.float32)
        labels_spec = tf.TensorSpec([None, classes], tf.float32)
        self._train_epoch = tf.function(self._epoch_graph, jit_compile=True, input_signature=[
            images_spec, labels_spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32)])
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

    def train_step(self, images: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor | None = None, *,
                   indices: tf.Tensor | None = None, epoch: tf.Tensor | int = 0) -> tuple[tf.Tensor, tf.Tensor]:
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
            loss = fixed_mean(losses, axis=0) if mask is None else fixed_sum(losses * mask, axis=0) / tf.reduce_sum(mask)
        gradients = tape.gradient(loss, self.model.parameters)
        self.update(gradients)
        return loss, count_correct(labels, logits, mask)

    def forward(self, images: tf.Tensor, labels: tf.Tensor, *, indices: tf.Tensor, epoch: tf.Tensor | int) -> tuple[tf.Tensor, tf.Tensor]:
        """(logits, per-example losses) of a training batch: augmented, with dropout and smoothed targets as configured."""
        settings = self.regularization
        if settings.augment is not None:
            images = augment(images, settings=settings.augment, epoch=epoch, indices=indices, background=settings.background)
        layer_input = None
        if settings.dropout_input or settings.dropout_hidden:
            def layer_input(inputs, layer):
                rate = settings.dropout_input if layer == 0 else settings.dropout_hidden
                return dropout(inputs, rate=rate, seed=settings.dropout_seed, epoch=epoch, indices=indices, layer=layer)
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
            loss, correct = self.train_step(tf.gather(images, batch), tf.gather(labels, batch), mask, indices=batch, epoch=epoch)
            return loss, tf.cast(correct, tf.float32), tf.reduce_sum(mask)

        return self._epoch_loop(num_steps, train_batch)

    def _epoch_loop(self, num_steps, train_batch):
        """Run ``train_batch(step) -> (mean loss, correct, size)`` for every step, stopping at the first non-finite loss."""
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
        loss, accuracy, step, bad_loss = self._train_epoch(*self.resident_tensors(split), order, tf.constant(epoch, tf.int32))
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
            chunk_losses, chunk_correct = self._evaluate(split.images[start : start + EVAL_BATCH], split.labels[start : start + EVAL_BATCH])
            losses.extend(chunk_losses.numpy().tolist())
            correct += int(chunk_correct)
        return math.fsum(losses) / len(split), correct / len(split)


class DistributedTrainer(Trainer):
    """The same step on every replica of a tf.distribute strategy (mirrored or multi-worker).

    Model and optimizer must have been created under ``strategy.scope()``.
    Each step, every replica computes its piece's per-example losses, averages
    them over the *global* batch (``tf.nn.compute_average_loss`` with the
    all-reduced batch size, so a short last batch counts right), and the
    gradients are all-reduced before ``optimizer.apply``. Loss and accuracy
    are summed over replicas. Validation runs on each worker, on the weights' primary copy.
    """

    def __init__(self, model: Mlp, optimizer: Optimizer, *, loss: str, batch_size: int, strategy: tf.distribute.Strategy,
                 regularization: Regularization = Regularization(), average: WeightAverage | None = None) -> None:
        super().__init__(model, optimizer, loss=loss, batch_size=batch_size, regularization=regularization, average=average)
        self.strategy = strategy
        self._distributed_epoch = tf.function(self._distributed_epoch_graph)
        self._broadcast = tf.function(self._broadcast_graph)

    def replica_step(self, images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor, epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """One step on this replica's piece: (summed loss, number correct, piece size), all float32."""
        context = tf.distribute.get_replica_context()
        piece_size = tf.cast(tf.shape(images)[0], tf.float32)  # float32: all-reduced on any device
        global_batch_size = tf.cast(context.all_reduce(tf.distribute.ReduceOp.SUM, piece_size), tf.int32)
        with tf.GradientTape() as tape:
            logits, losses = self.forward(images, labels, indices=indices, epoch=epoch)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=global_batch_size)
        self.update(context.all_reduce(tf.distribute.ReduceOp.SUM, tape.gradient(loss, self.model.parameters)))
        return fixed_sum(losses, axis=0), tf.cast(count_correct(labels, logits), tf.float32), piece_size

    def _distributed_epoch_graph(self, iterator, num_steps, epoch):
        def train_batch(step):
            per_replica = self.strategy.run(self.replica_step, args=(*next(iterator), epoch))
            loss_sum, correct, size = (self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica)
            return loss_sum / size, correct, size

        return self._epoch_loop(num_steps, train_batch)

    def train_epoch(self, split: Split, order: np.ndarray, *, epoch: int = 1) -> EpochResult:
        images, labels = self.resident_tensors(split)

        def input_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            """This worker's pieces, in the round-robin order the strategy hands them to its replicas."""
            replicas = context.num_replicas_in_sync
            pieces = replica_pieces(order, batch_size=self.batch_size, num_replicas=replicas)
            local_replicas = replicas // context.num_input_pipelines
            mine = [piece for i, piece in enumerate(pieces) if (i % replicas) // local_replicas == context.input_pipeline_id]
            indices = tf.RaggedTensor.from_row_lengths(np.concatenate(mine), [len(piece) for piece in mine])
            dataset = tf.data.Dataset.from_tensor_slices(indices).map(lambda batch: (tf.gather(images, batch), tf.gather(labels, batch), batch))
            return dataset.prefetch(tf.data.AUTOTUNE)  # the next pieces are gathered while the replicas step

        # The iterator is made here, not inside the tf.function: one that a
        # compiled loop leaves unfinished (the divergence guard stops early)
        # hangs TensorFlow when the function destroys it on return.
        batches = iter(self.strategy.distribute_datasets_from_function(input_pipeline))
        num_steps = tf.constant(steps_per_epoch(len(order), self.batch_size))
        try:
            loss, accuracy, step, bad_loss = self._distributed_epoch(batches, num_steps, tf.constant(epoch, tf.int32))
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.CancelledError, tf.errors.DeadlineExceededError) as error:
            lines = [line.strip() for line in str(error.message).splitlines()]
            reason = next((line for line in lines if "abort" in line.lower() or "connect" in line.lower()), lines[-1])[:300]
            raise WorkerLost(f"another worker stopped answering during the epoch ({type(error).__name__}: {reason}). "
                             f"Restart every worker: the chief resumes from its last checkpoint and the others take it over.") from None
        return EpochResult(float(loss), float(accuracy), int(step), float(bad_loss))

    def _broadcast_graph(self, start):
        state = self.state

        def take_the_chiefs(start):
            for variable in state:
                variable.assign(chiefs_value(variable))
            return chiefs_value(start)

        return self.strategy.experimental_local_results(self.strategy.run(take_the_chiefs, args=(start,)))[0]

    def agree_on_start(self, start: int) -> int:
        """Every worker continues from the chief's checkpoint: its weights, optimizer state and epoch count.

        Only the chief reads models/checkpoint.npz (other workers write theirs
        to a throwaway directory), so after a restart the others would start
        from scratch; instead they all take the chief's state.
        """
        return int(self._broadcast(tf.constant(start, tf.int64)))


def build_trainer(model_params: ModelParams, train_params: TrainParams, *, input_size: int, train_size: int,
                  strategy: tf.distribute.Strategy | None, regularization: Regularization = Regularization()) -> Trainer:
    """A freshly initialised model and optimizer, and the trainer for ``hardware.distribute``.

    Under a strategy the Variables must be created inside its scope, so that
    every replica holds a copy; the initial weights are the same either way.
    """
    with variable_scope(strategy):
        model = build_model(model_params, input_size=input_size)
        optimizer = make_optimizer(train_params, model.parameters, steps_per_epoch=steps_per_epoch(train_size, train_params.batch_size))
        average = WeightAverage(model, decay=train_params.ema_decay) if train_params.ema_decay > 0 else None
    settings = {"loss": train_params.loss, "batch_size": train_params.batch_size, "regularization": regularization, "average": average}
    if strategy is None:
        return Trainer(model, optimizer, **settings)
    return DistributedTrainer(model, optimizer, strategy=strategy, **settings)


def count_correct(labels: tf.Tensor, logits: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    """How many argmax predictions match the one-hot labels (both argmax give int64), among the unmasked examples."""
    matches = tf.equal(tf.argmax(logits, axis=1), tf.argmax(labels, axis=1))
    if mask is not None:
        matches = tf.logical_and(matches, mask > 0)
    return tf.reduce_sum(tf.cast(matches, tf.int32))


# ------------------------------------------------------------------ the loop


def divergence_message(*, epoch: int, step: int, steps: int, loss: float, hints: str) -> str:
    return (
        f"training diverged: the loss became {loss} at epoch {epoch}, step {step + 1} of {steps}. "
        f"Likely causes: a learning rate too high, unscaled input (pixels should be scaled to a small range), "
        f"or too large an initialisation. {hints} No model was written."
    )


@dataclass(frozen=True)
class Checkpointing:
    """Where ``fit`` writes its per-epoch checkpoint, and the run it belongs to (a resume needs the same fingerprint)."""

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
        start, history = restore_checkpoint(checkpoint.path, model=trainer.model, optimizer=trainer.optimizer, average=averaged(trainer),
                                            run_fingerprint=checkpoint.run_fingerprint, epochs=epochs, log=log)
    start = trainer.agree_on_start(start)
    if history.rows and after_epoch is not None:
        history.keep(keep)
        after_epoch(history)
    steps = steps_per_epoch(len(train), trainer.batch_size)
    with tqdm(total=epochs, initial=start, desc="train", unit="epoch", disable=None, leave=False) as progress:
        for epoch in range(start + 1, epochs + 1):
            result = trainer.train_epoch(train, epoch_order(len(train), seed=settings.shuffle_seed, epoch=epoch), epoch=epoch)
            if result.diverged_step >= 0:
                raise TrainingDiverged(divergence_message(epoch=epoch, step=result.diverged_step, steps=steps,
                                                          loss=result.diverged_loss, hints=divergence_hints))
            val_loss, val_accuracy = trainer.evaluate(val)
            history.append(EpochRecord(epoch, result.loss, result.accuracy, val_loss, val_accuracy))
            history.keep(keep)
            if keep == "best" and history.best_epoch == epoch:
                history.best_weights = trainer.result_model.get_arrays()
            history.stopped_early = patience is not None and epoch < epochs and epoch - history.best_epoch >= patience
            if checkpoint is not None:
                save_checkpoint(checkpoint.path, model=trainer.model, optimizer=trainer.optimizer, average=averaged(trainer), epoch=epoch,
                                run_fingerprint=checkpoint.run_fingerprint, history=history)
            if after_epoch is not None:
                after_epoch(history)
            progress.set_postfix(loss=f"{result.loss:.4f}", acc=f"{result.accuracy:.4f}", val_acc=f"{val_accuracy:.4f}")
            progress.update(1)
            log(f"epoch {epoch}/{epochs}: train loss {result.loss:.4f} acc {result.accuracy:.4f} | "
                f"val loss {val_loss:.4f} acc {val_accuracy:.4f}")
            if history.stopped_early:
                log(f"train: stopping early, no better val accuracy for {patience} epochs (best {history.best_val_accuracy:.4f} at epoch {history.best_epoch})")
                break
    if keep == "best":
        trainer.model.set_arrays(history.best_weights)
    elif trainer.average is not None:
        trainer.model.set_arrays(trainer.average.model.get_arrays())
    return history


def averaged(trainer: Trainer) -> Mlp | None:
    """The weight average a checkpoint carries, if the run keeps one."""
    return None if trainer.average is None else trainer.average.model
