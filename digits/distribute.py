"""Which devices and machines train: ``hardware.distribute`` as a tf.distribute strategy.

- ``none``: no strategy; digits.training's single-device loop.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the local GPUs (all,
  or the first ``hardware.devices``), or, on a machine without a GPU, over
  ``hardware.devices`` logical CPU devices. That is how the tests run mirrored
  training on a laptop.
- ``multi_worker``: ``tf.distribute.MultiWorkerMirroredStrategy``; the cluster
  and this process's task come from the ``TF_CONFIG`` environment variable.
  Each worker uses its GPUs, or its CPU.

The strategy must be made before TensorFlow runs its first op: splitting the
CPU into logical devices, and joining a cluster, are only possible then.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from digits.runtime import tf

from digits.errors import PipelineError
from digits.params import HardwareParams


def make_strategy(params: HardwareParams) -> tf.distribute.Strategy | None:
    """The strategy for ``hardware.distribute`` (None for ``none``); call it before any other TF work."""
    if params.distribute == "mirrored":
        return tf.distribute.MirroredStrategy(mirrored_devices(params.devices))
    if params.distribute == "multi_worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        print(
            "train: joining the cluster in TF_CONFIG; waiting for every worker. TensorFlow ignores Ctrl-C "
            "during this wait: stop a worker whose peers never come with kill -9",
            flush=True,
        )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def mirrored_devices(count: int | None) -> list[str]:
    """The local GPUs (the first ``count``, or all), else ``count`` logical CPU devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if count is not None and count > len(gpus):
            raise PipelineError(
                f"hardware.devices = {count}: this machine has only {len(gpus)} GPU(s); use at most {len(gpus)}, or "
                "null for all"
            )
        return [f"/gpu:{i}" for i in range(count or len(gpus))]
    if count is None:
        raise PipelineError(
            "hardware.devices = null: with hardware.distribute = mirrored and no GPU on this machine, "
            "set hardware.devices to the number of logical CPU devices to split the CPU into (e.g. 2)"
        )
    split_cpu(count)
    return [f"/cpu:{i}" for i in range(count)]


def split_cpu(count: int) -> None:
    """Present the CPU as ``count`` logical devices (possible only before TF is initialised)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu)
    if (len(configured) if configured else 1) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError:
        raise PipelineError(
            f"hardware.devices = {count}: TensorFlow was already initialised, so the CPU can no longer be "
            f"split into {count} logical devices; make the strategy before any other TensorFlow work"
        ) from None


def check_tf_config(raw: str | None) -> None:
    """Fail early and clearly on a missing or malformed TF_CONFIG instead of inside TensorFlow."""
    example = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
    if not raw:
        raise PipelineError(
            f"hardware.distribute = multi_worker needs the TF_CONFIG environment variable, e.g. {example}"
        )
    try:
        config = json.loads(raw)
        members = config["cluster"].get(config["task"]["type"], [])
        index = config["task"]["index"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PipelineError(
            f"TF_CONFIG is not a cluster description ({type(error).__name__}: {error}); expected e.g. {example}"
        ) from None
    if config["task"]["type"] not in ("worker", "chief") or not isinstance(index, int) or not 0 <= index < len(members):
        raise PipelineError(
            f"TF_CONFIG task = {config['task']}: must name a 'worker' (or 'chief') listed in cluster, e.g. {example}"
        )


def variable_scope(strategy: tf.distribute.Strategy | None) -> contextlib.AbstractContextManager:
    """Where the model's and optimizer's Variables must be created: the strategy's scope, if any."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process's files are the run's outputs (always, except on non-chief workers)."""
    return strategy is None or strategy.extended.should_checkpoint


@contextlib.contextmanager
def output_root(strategy: tf.distribute.Strategy | None) -> Iterator[Path]:
    """Where this process writes: the working directory for the chief, a throwaway directory for other workers.

    Every worker runs the same saving code (TensorFlow's rule for multi-worker
    saving, and it keeps the workers in lockstep), but only the chief's files
    land in models/, metrics/ and plots/.
    """
    if is_chief(strategy):
        yield Path(".")
        return
    with tempfile.TemporaryDirectory(prefix="digits-worker-") as directory:
        yield Path(directory)


def chiefs_value(value: tf.Tensor) -> tf.Tensor:
    """In a replica context: the chief's value of ``value`` (its first replica's), on every replica.

    A sum to which only replica 0 contributes: a broadcast built from the one
    collective every strategy has.
    """
    context = tf.distribute.get_replica_context()
    contribution = tf.where(context.replica_id_in_sync_group == 0, value, tf.zeros_like(value))
    return context.all_reduce(tf.distribute.ReduceOp.SUM, contribution)


def check_same_run(strategy: tf.distribute.Strategy | None, run_fingerprint: str) -> None:
    """Fail on every worker at once if any worker was started with other params than the chief.

    Workers with another batch size or epoch count would wait for each other
    forever, and other layer sizes would not even create their Variables;
    so this runs before any Variable exists, comparing params fingerprints.
    """
    if strategy is None:
        return
    own = tf.constant(int(run_fingerprint[:15], 16), tf.int64)

    def count_mismatches() -> tf.Tensor:
        differs = tf.cast(chiefs_value(own) != own, tf.int64)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, differs)

    mismatches = int(strategy.experimental_local_results(tf.function(lambda: strategy.run(count_mismatches))())[0])
    if mismatches:
        raise PipelineError(
            f"{mismatches} of {strategy.num_replicas_in_sync} replicas were started with other params than the chief "
            f"(this worker's params fingerprint: {run_fingerprint}); every worker needs the same params.yaml "
            f"and the data/prepared/ it makes"
        )


def describe(strategy: tf.distribute.Strategy | None) -> str:
    if strategy is None:
        return "one device"
    resolver = strategy.cluster_resolver
    if resolver is not None and resolver.task_type is not None:
        jobs = resolver.cluster_spec().as_dict()
        workers = len(jobs.get("chief", [])) + len(jobs.get("worker", []))
        role = "chief" if is_chief(strategy) else "not the chief: its files go to a temporary directory"
        this = f"{resolver.task_type} {resolver.task_id}, {role}"
        return f"{strategy.num_replicas_in_sync} replicas on {workers} workers (this is {this})"
    devices = ", ".join(device.split("device:")[-1] for device in strategy.extended.worker_devices)
    return f"{strategy.num_replicas_in_sync} replicas ({devices})"
