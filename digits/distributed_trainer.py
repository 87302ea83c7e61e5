"""The compiled step on every replica of a tf.distribute strategy (``hardware.distribute``: digits.distribute).

Each replica takes its piece of the global batch from a distributed dataset,
the per-example losses are averaged over the global batch, and the gradients
are all-reduced before the same in-place update as digits.trainer's. The
pieces put back together are the single-device loop's batches, which is why
a mirrored run follows the single-device one.
"""

from __future__ import annotations

import warnings

from digits.runtime import tf

import numpy as np

from digits.averaging import WeightAverage
from digits.data import Split, steps_per_epoch
from digits.distribute import chiefs_value
from digits.errors import PipelineError
from digits.model import Mlp
from digits.optimizers import Optimizer
from digits.reductions import fixed_sum
from digits.trainer import EpochResult, Regularization, Trainer, count_correct


class WorkerLost(PipelineError):
    """A peer in a multi-worker cluster stopped answering mid-epoch."""


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


class DistributedTrainer(Trainer):
    """The same step on every replica of a tf.distribute strategy (mirrored or multi-worker).

    Model and optimizer must have been created under ``strategy.scope()``.
    Each step, every replica computes its piece's per-example losses, averages
    them over the *global* batch (``tf.nn.compute_average_loss`` with the
    all-reduced batch size, so a short last batch counts right), and the
    gradients are all-reduced before ``optimizer.apply``. Loss and accuracy
    are summed over replicas. Validation runs on each worker, on the weights' primary copy.
    """

    def __init__(
        self,
        model: Mlp,
        optimizer: Optimizer,
        *,
        loss: str,
        batch_size: int,
        strategy: tf.distribute.Strategy,
        regularization: Regularization = Regularization(),
        average: WeightAverage | None = None,
    ) -> None:
        super().__init__(
            model, optimizer, loss=loss, batch_size=batch_size, regularization=regularization, average=average
        )
        self.strategy = strategy
        self._distributed_epoch = tf.function(self._distributed_epoch_graph)
        self._broadcast = tf.function(self._broadcast_graph)

    def replica_step(
        self, images: tf.Tensor, labels: tf.Tensor, indices: tf.Tensor, epoch: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
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
            loss_sum, correct, size = (
                self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica
            )
            return loss_sum / size, correct, size

        return self._epoch_loop(num_steps, train_batch)

    def train_epoch(self, split: Split, order: np.ndarray, *, epoch: int = 1) -> EpochResult:
        images, labels = self.resident_tensors(split)

        def input_pipeline(context: tf.distribute.InputContext) -> tf.data.Dataset:
            """This worker's pieces, in the round-robin order the strategy hands them to its replicas."""
            replicas = context.num_replicas_in_sync
            pieces = replica_pieces(order, batch_size=self.batch_size, num_replicas=replicas)
            local_replicas = replicas // context.num_input_pipelines
            mine = [
                piece for i, piece in enumerate(pieces) if (i % replicas) // local_replicas == context.input_pipeline_id
            ]
            indices = tf.RaggedTensor.from_row_lengths(np.concatenate(mine), [len(piece) for piece in mine])
            dataset = tf.data.Dataset.from_tensor_slices(indices).map(
                lambda batch: (tf.gather(images, batch), tf.gather(labels, batch), batch)
            )
            return dataset.prefetch(tf.data.AUTOTUNE)  # the next pieces are gathered while the replicas step

        # The iterator is made here, not inside the tf.function: one that a
        # compiled loop leaves unfinished (the divergence guard stops early)
        # hangs TensorFlow when the function destroys it on return.
        batches = iter(self.strategy.distribute_datasets_from_function(input_pipeline))
        num_steps = tf.constant(steps_per_epoch(len(order), self.batch_size))
        try:
            with warnings.catch_warnings():  # tf.data's internals warn once per traced epoch; nothing to act on
                warnings.filterwarnings(
                    "ignore", message="To make it possible to preserve tf.data options", category=UserWarning
                )
                loss, accuracy, step, bad_loss = self._distributed_epoch(
                    batches, num_steps, tf.constant(epoch, tf.int32)
                )
        except (
            tf.errors.UnavailableError,
            tf.errors.AbortedError,
            tf.errors.CancelledError,
            tf.errors.DeadlineExceededError,
        ) as error:
            lines = [line.strip() for line in str(error.message).splitlines()]
            reason = next((line for line in lines if "abort" in line.lower() or "connect" in line.lower()), lines[-1])[
                :300
            ]
            raise WorkerLost(
                f"another worker stopped answering during the epoch ({type(error).__name__}: {reason}). "
                f"Restart every worker: the chief resumes from its last checkpoint and the others take it over."
            ) from None
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
