"""Seconds per epoch of four training loops for the same 784-256-128-10 net.

Same prepared MNIST (data/prepared/train.npz, run `dvc repro prepare`
first), same batch (128), same init, plain SGD lr 0.1, in one process:

1. eager: the seeds' loop, a Python for over batches, GradientTape, assign_sub
2. tf.function per step: the same step compiled, still one Python call a batch
3. this project: digits.training.Trainer, one compiled call per epoch
4. Keras model.fit on the equivalent keras.Sequential

It also measures the machine's float32 matmul peak with a large matmul and
reports the fraction of it the project's loop reaches (6 FLOPs per weight per
example: 2 forward, 4 backward). The last line is ``ratio_vs_keras_fit=<float>``:
the project's epoch time over Keras fit's (target <= 0.45).

    python benchmarks/train_speed.py [--epochs 3] [--eager-epochs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from digits.data import load_split  # noqa: E402
from digits.model import build_model  # noqa: E402
from digits.optimizers import make_optimizer  # noqa: E402
from digits.params import load_params  # noqa: E402
from digits.training import Trainer, epoch_order, per_example_loss, steps_per_epoch  # noqa: E402
from stages.baseline import build_keras_model, keras_loss, keras_optimizer  # noqa: E402

BATCH = 128
LR = 0.1


def timed_epochs(run_epoch, epochs: int) -> float:
    """Median seconds of the epochs after a first, untimed one (tracing, warm-up)."""
    run_epoch(0)
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        run_epoch(epoch)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    a = tf.random.stateless_normal([size, size], seed=[1, 2])
    b = tf.random.stateless_normal([size, size], seed=[3, 4])
    product = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))
    product(a, b).numpy()
    started = time.perf_counter()
    for _ in range(repeats):
        product(a, b).numpy()
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per loop (after one warm-up)")
    parser.add_argument("--eager-epochs", type=int, default=1, help="timed epochs for the slow eager loop")
    args = parser.parse_args()

    params = load_params()
    model_params = params.model.model_copy(update={"hidden": [256, 128], "activation": "relu", "init": "truncated_normal"})
    train_params = params.train.model_copy(update={"optimizer": "sgd", "lr": LR, "lr_schedule": "constant", "batch_size": BATCH, "loss": "cross_entropy"})
    train = load_split("train")
    steps = steps_per_epoch(len(train), BATCH)
    images, labels = tf.constant(train.images), tf.constant(train.labels)
    print(f"{len(train)} images, batch {BATCH}, {steps} steps per epoch, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}")

    def fresh_trainer() -> Trainer:
        model = build_model(model_params)
        return Trainer(model, make_optimizer(train_params, model.parameters, steps_per_epoch=steps), loss="cross_entropy", batch_size=BATCH)

    def seed_style_step(model, x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(per_example_loss("cross_entropy", y, model(x)))
        for variable, gradient in zip(model.parameters, tape.gradient(loss, model.parameters)):
            variable.assign_sub(LR * gradient)

    def per_step_loop(step_fn):
        model = build_model(model_params)

        def run_epoch(epoch):
            order = epoch_order(len(train), seed=0, epoch=epoch)
            for start in range(0, len(train), BATCH):
                batch = order[start : start + BATCH]
                step_fn(model, tf.gather(images, batch), tf.gather(labels, batch))
        return run_epoch

    results = {}
    results["eager per step (seeds)"] = timed_epochs(per_step_loop(seed_style_step), args.eager_epochs)
    compiled_step = tf.function(seed_style_step, reduce_retracing=True)
    results["tf.function per step"] = timed_epochs(per_step_loop(compiled_step), args.epochs)
    trainer = fresh_trainer()
    results["this project (compiled epoch)"] = timed_epochs(lambda e: trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=e)), args.epochs)
    keras_model = build_keras_model(model_params, input_size=train.images.shape[1])
    keras_model.compile(optimizer=keras_optimizer(train_params, steps=steps), loss=keras_loss("cross_entropy"), metrics=["accuracy"])
    results["keras model.fit"] = timed_epochs(lambda e: keras_model.fit(train.images, train.labels, batch_size=BATCH, epochs=1, shuffle=True, verbose=0), args.epochs)

    for name, seconds in results.items():
        print(f"{name:32s} {seconds:7.3f} s/epoch")
    ours, keras_fit = results["this project (compiled epoch)"], results["keras model.fit"]
    weights = sum(a * b for a, b in zip([784, 256, 128], [256, 128, 10]))
    achieved = 6 * weights * len(train) / ours / 1e9
    peak = matmul_peak_gflops()
    print(f"float32 matmul peak (2048^3): {peak:.1f} GFLOP/s; this project's loop: {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of peak")
    print(f"this project / keras fit: {ours / keras_fit:.3f}")
    print(f"ratio_vs_keras_fit={ours / keras_fit:.4f}")


if __name__ == "__main__":
    main()
