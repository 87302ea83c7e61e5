"""Single device vs hardware.distribute: mirrored, on the full prepared data.

Trains the params.yaml network and recipe from the same initial weights over
the same data order three ways: the single-device loop (``hardware.distribute:
none``), MirroredStrategy (all local GPUs, or ``--devices`` logical CPU
devices on a machine without GPU), and, as a control, the single-device loop
with the examples of every batch reversed (the same batches, the same maths,
only the order of the floating-point sums changes).

It prints the largest absolute weight difference from the single-device run
after 1, 10, 100 steps and one epoch, for both mirrored and the control, then
the seconds per epoch of the single-device and mirrored loops. The control
shows how fast rounding differences alone grow under the recipe: the
mirrored run can be no closer than that.

    python benchmarks/distributed.py [--epochs 3] [--devices 2]

Needs data/prepared/ (`dvc repro prepare`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digits.runtime import tf

import numpy as np

from digits.data import (
    load_split,
    steps_per_epoch,
)
from digits.distribute import describe, make_strategy
from digits.params import load_params
from digits.trainer import Trainer
from digits.training import build_trainer, epoch_order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per mode; epoch 1 (tracing, chunked) is not timed"
    )
    parser.add_argument(
        "--devices", type=int, default=2, help="logical CPU devices when there is no GPU (GPUs: all are used)"
    )
    args = parser.parse_args()

    params = load_params()
    gpus = tf.config.list_physical_devices("GPU")
    hardware = params.hardware.model_copy(update={"distribute": "mirrored", "devices": None if gpus else args.devices})
    strategy = make_strategy(hardware)  # before any TF op: may split the CPU
    settings = params.train
    tf.config.experimental.enable_op_determinism()
    train = load_split("train")
    steps = steps_per_epoch(len(train), settings.batch_size)
    print(
        f"{len(train)} images, batch {settings.batch_size}, {steps} steps per epoch, TensorFlow {tf.__version__}, "
        f"{os.cpu_count()} CPUs, {len(gpus)} GPUs; mirrored: {describe(strategy)}"
    )

    trainers = {
        name: build_trainer(
            params.model, settings, input_size=train.images.shape[1], train_size=len(train), strategy=mode_strategy
        )
        for name, mode_strategy in (("none", None), ("mirrored", strategy), ("control", None))
    }

    # Epoch 1, in chunks of steps: how far each run is from the single-device one
    order = epoch_order(len(train), seed=settings.shuffle_seed, epoch=1)
    batches = [order[start : start + settings.batch_size] for start in range(0, len(order), settings.batch_size)]
    orders = {"none": batches, "mirrored": batches, "control": [batch[::-1] for batch in batches]}
    done = 0
    for until in sorted({1, 10, 100, steps}):
        for name, trainer in trainers.items():
            trainer.train_epoch(train, np.concatenate(orders[name][done:until]))
        done = until
        differences = {name: max_difference(trainers["none"], trainers[name]) for name in ("mirrored", "control")}
        print(
            f"after {until:4d} steps: max |weights - single device|: mirrored {differences['mirrored']:.3g}, "
            f"control (single device, each batch reversed) {differences['control']:.3g}"
        )

    # Epochs 2..N: seconds per epoch
    for name in ("none", "mirrored"):
        seconds = []
        for epoch in range(2, args.epochs + 1):
            started = time.perf_counter()
            trainers[name].train_epoch(train, epoch_order(len(train), seed=settings.shuffle_seed, epoch=epoch))
            seconds.append(time.perf_counter() - started)
        print(f"{name:9s} {statistics.median(seconds):7.3f} s/epoch (median of epochs 2-{args.epochs})")


def max_difference(first: Trainer, second: Trainer) -> float:
    pairs = zip(first.model.parameters, second.model.parameters)
    return max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in pairs)


if __name__ == "__main__":
    main()
