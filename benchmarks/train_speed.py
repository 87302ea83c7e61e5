"""Seconds per epoch of this project's training loop against its peers, side by side.

The same net (784-256-128-10 by default, ``--hidden 1024 1024`` for a wider
one), batch (128), prepared MNIST (``data/prepared/train.npz``: run
``dvc repro prepare`` first) and plain SGD, one contender per worker process:

- eager: the seeds' loop, a Python for over batches, GradientTape, assign_sub
- tf.function per step: the same step compiled, still one Python call a batch
- this project: digits.training.Trainer, one XLA-compiled call per epoch, with
  the same bits on every CPU (digits.runtime); the same with
  ``DIGITS_SAME_BITS=0`` (Eigen's CPU-specific matmuls, the loop before it
  gave the same bits everywhere); and with XLA's default flags
- keras fit: ``model.fit`` on the equivalent keras.Sequential
- jax: a ``jax.jit`` epoch, ``lax.fori_loop`` over the full batches, each step
  gathering its batch from the epoch's permutation (the idiomatic fast JAX
  loop), with JAX's default XLA flags; and the same with this project's flags
- torch: PyTorch as most people write it (a DataLoader over the tensors,
  ``nn.Sequential``, ``optim.SGD``), and its fastest form, the whole step
  (forward, backward, update) one ``torch.compile(fullgraph=True)`` graph
  over batches gathered from the epoch's permutation
- limit: the exact matmuls of one training step at their real shapes (forward,
  weight gradients, input gradients of every layer but the first), in a tight
  XLA-compiled loop of one epoch's steps; under both XLA flag settings, and the
  faster counts. No training loop can do less than this on this machine.

Each contender runs in its own process (its own XLA flags and thread pools)
and is warmed up first (tracing, compiling); then every round times one epoch
of each contender in turn, so a noisy spell hits them all alike. FLOPs are the
matmuls actually performed: 2 per weight per example forward, 2 for the weight
gradient, and 2 for the input gradient except the first layer's (nobody needs
the gradient with respect to the images).

JAX is installed by ``make bench`` only (requirements-bench.txt), PyTorch by
``make bench-torch`` (requirements-torch.txt); a contender whose library is
missing is left out, with a line saying so. The last lines are
``ratio_vs_keras_fit=``, ``ratio_vs_jax=``, ``ratio_vs_torch_compile=`` (this
project's epoch over theirs, median of the per-round ratios) and
``fraction_of_limit=`` (the limit's epoch over this project's, median).

    python benchmarks/train_speed.py [--rounds 5] [--hidden 256 128] [--batch 128]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
USERS_XLA_FLAGS = os.environ.get("XLA_FLAGS", "")  # before digits.runtime adds the project's

LR = 0.1
PROJECT = "this project (XLA epoch)"
PROJECT_DEFAULT_FLAGS = "this project, XLA's default flags"
PROJECT_CPU_SPECIFIC = "this project, DIGITS_SAME_BITS=0"  # Eigen's matmuls: the loop before it gave the same bits everywhere
KERAS = "keras model.fit"
JAX = "jax.jit epoch (default flags)"
JAX_PROJECT_FLAGS = "jax.jit epoch (project's flags)"
LIMIT = "limit: matmuls only (project's flags)"
LIMIT_DEFAULT = "limit: matmuls only (default flags)"
TORCH = "torch (DataLoader, nn.Sequential, SGD)"
TORCH_COMPILE = "torch.compile step (fullgraph)"
CONTENDERS = ["eager per step (seeds)", "tf.function per step", PROJECT, PROJECT_CPU_SPECIFIC, PROJECT_DEFAULT_FLAGS, KERAS, JAX, JAX_PROJECT_FLAGS,
              TORCH, TORCH_COMPILE, LIMIT, LIMIT_DEFAULT]
NEEDS_JAX = {JAX, JAX_PROJECT_FLAGS}
NEEDS_TORCH = {TORCH, TORCH_COMPILE}
# Contenders that must not get this project's XLA flags (digits.runtime sets them when it is imported).
DEFAULT_FLAGS = {JAX, LIMIT_DEFAULT, PROJECT_DEFAULT_FLAGS}


def matmul_flops_per_example(layer_sizes: list[int]) -> int:
    """FLOPs of the matmuls one training example costs: forward, weight gradients, input gradients but the first layer's."""
    products = [fan_in * fan_out for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:])]
    return 2 * sum(products) + 2 * sum(products) + 2 * sum(products[1:])


# ------------------------------------------------------------------ contenders (each runs in a worker)


def tensorflow_contender(name: str, layer_sizes: list[int], batch: int, train):
    """A function running one epoch (given its index) of a TensorFlow contender."""
    from digits.model import build_model
    from digits.optimizers import make_optimizer
    from digits.params import load_params
    from digits.runtime import tf
    from digits.data import steps_per_epoch
    from digits.training import Trainer, epoch_order, per_example_loss

    params = load_params()
    model_params = params.model.model_copy(update={"hidden": layer_sizes[1:-1], "activation": "relu", "init": "truncated_normal"})
    train_params = params.train.model_copy(update={"optimizer": "sgd", "lr": LR, "lr_schedule": "constant", "batch_size": batch, "loss": "cross_entropy"})
    steps = steps_per_epoch(len(train), batch)
    images, labels = tf.constant(train.images), tf.constant(train.labels)

    if name in (PROJECT, PROJECT_CPU_SPECIFIC, PROJECT_DEFAULT_FLAGS):
        model = build_model(model_params)
        trainer = Trainer(model, make_optimizer(train_params, model.parameters, steps_per_epoch=steps), loss="cross_entropy", batch_size=batch)
        return lambda epoch: trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=epoch))

    if name == KERAS:
        from digits.keras_reference import build_keras_model, keras_loss, keras_optimizer

        keras_model = build_keras_model(model_params, input_size=layer_sizes[0])
        keras_model.compile(optimizer=keras_optimizer(train_params, steps=steps), loss=keras_loss("cross_entropy"), metrics=["accuracy"])
        return lambda epoch: keras_model.fit(train.images, train.labels, batch_size=batch, epochs=1, shuffle=True, verbose=0)

    def seed_style_step(model, x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(per_example_loss("cross_entropy", y, model(x)))
        for variable, gradient in zip(model.parameters, tape.gradient(loss, model.parameters)):
            variable.assign_sub(LR * gradient)

    step = seed_style_step if name.startswith("eager") else tf.function(seed_style_step, reduce_retracing=True)
    model = build_model(model_params)

    def run_epoch(epoch):
        order = epoch_order(len(train), seed=0, epoch=epoch)
        for start in range(0, len(train), batch):
            indices = order[start : start + batch]
            step(model, tf.gather(images, indices), tf.gather(labels, indices))
    return run_epoch


def limit_contender(layer_sizes: list[int], batch: int, steps: int):
    """One epoch's worth of the step's matmuls alone, at their real shapes, in one XLA-compiled loop.

    A scalar carried through the loop is added to the smallest operand of
    each matmul, so XLA cannot hoist the (otherwise loop-invariant) matmuls
    out of the loop; those adds are under 0.1% of the FLOPs.
    """
    import numpy as np

    from digits.runtime import tf

    rng = np.random.default_rng(0)
    weights = [tf.constant(rng.standard_normal((a, b)).astype(np.float32) * 0.05) for a, b in zip(layer_sizes[:-1], layer_sizes[1:])]
    activations = [tf.constant(rng.standard_normal((batch, size)).astype(np.float32)) for size in layer_sizes]

    def smaller_plus(a, b, carry):
        return (a + carry, b) if a.shape.num_elements() <= b.shape.num_elements() else (a, b + carry)

    @tf.function(jit_compile=True)
    def epoch(weights, activations):
        def body(i, carry):
            total = carry
            for layer, weight in enumerate(weights):
                inputs, outputs = activations[layer], activations[layer + 1]  # outputs stand in for the output gradient
                products = [tf.matmul(*smaller_plus(inputs, weight, carry)),                          # forward
                            tf.matmul(*smaller_plus(inputs, outputs, carry), transpose_a=True)]       # weight gradient
                if layer > 0:
                    products.append(tf.matmul(*smaller_plus(outputs, weight, carry), transpose_b=True))  # input gradient
                total += sum(product[0, 0] for product in products) * 1e-30
            return i + 1, total
        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.constant(0.0)))[1]

    return lambda _epoch: float(epoch(weights, activations))


def jax_contender(layer_sizes: list[int], batch: int, train):
    """The idiomatic fast JAX loop: one jit-compiled epoch, lax.fori_loop over the full batches."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from digits.training import epoch_order

    images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
    steps = len(train) // batch
    keys = jax.random.split(jax.random.PRNGKey(1), len(layer_sizes) - 1)
    params = [(jax.random.truncated_normal(key, -2.0, 2.0, (fan_in, fan_out)) * 0.1, jnp.zeros(fan_out))
              for key, fan_in, fan_out in zip(keys, layer_sizes[:-1], layer_sizes[1:])]

    def loss_fn(params, x, y):
        for weight, bias in params[:-1]:
            x = jax.nn.relu(x @ weight + bias)
        logits = x @ params[-1][0] + params[-1][1]
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(logits), axis=-1)), logits

    @jax.jit
    def epoch(params, order):
        def body(step, carry):
            params, loss_sum, correct = carry
            batch_indices = lax.dynamic_slice(order, (step * batch,), (batch,))
            x, y = images[batch_indices], labels[batch_indices]
            (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
            params = jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)
            return params, loss_sum + loss, correct + jnp.sum(jnp.argmax(logits, 1) == jnp.argmax(y, 1))
        return lax.fori_loop(0, steps, body, (params, 0.0, 0))

    state = {"params": params}

    def run_epoch(index):
        state["params"], loss_sum, _ = epoch(state["params"], jnp.asarray(epoch_order(len(train), seed=0, epoch=index)))
        jax.block_until_ready(loss_sum)
        return np.asarray(loss_sum)
    return run_epoch


def torch_contender(name: str, layer_sizes: list[int], batch: int, train):
    """PyTorch's usual loop, or the whole step (torch.func's gradient and the update) as one torch.compile(fullgraph=True) graph."""
    import numpy as np
    import torch
    from torch import nn

    from digits.training import epoch_order

    torch.manual_seed(1)
    layers = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    loss_fn = nn.CrossEntropyLoss()
    images, classes = torch.from_numpy(train.images), torch.from_numpy(train.classes)

    if name == TORCH:
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)

        def step(x, y):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            optimizer.step()

        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, classes), batch_size=batch, shuffle=True)

        def run_epoch(_epoch):
            for x, y in loader:
                step(x, y)
        return run_epoch

    # The fastest form: a functional step (torch.func), forward, backward and update in one graph, as JAX's.
    weights = {name: parameter.detach() for name, parameter in model.named_parameters()}
    loss_and_gradients = torch.func.grad_and_value(lambda weights, x, y: loss_fn(torch.func.functional_call(model, weights, (x,)), y))

    def functional_step(weights, x, y):
        gradients, loss = loss_and_gradients(weights, x, y)
        return {name: weight - LR * gradients[name] for name, weight in weights.items()}, loss

    compiled = torch.compile(functional_step, fullgraph=True)
    state = {"weights": weights}

    def run_compiled_epoch(epoch):
        order = torch.from_numpy(epoch_order(len(train), seed=0, epoch=epoch).astype(np.int64))
        for start in range(0, len(order) - batch + 1, batch):  # full batches: one graph shape
            indices = order[start : start + batch]
            state["weights"], _ = compiled(state["weights"], images[indices], classes[indices])
    return run_compiled_epoch


def worker(name: str, layer_sizes: list[int], batch: int) -> None:
    """Build one contender, warm it up, then time one epoch per line read from stdin."""
    import digits.runtime  # noqa: F401 - adds the project's XLA flags (unless XLA_FLAGS names them) before JAX or TensorFlow compiles
    from digits.data import load_split
    from digits.data import steps_per_epoch

    train = load_split("train")
    if name in NEEDS_JAX:
        run_epoch = jax_contender(layer_sizes, batch, train)
    elif name in NEEDS_TORCH:
        run_epoch = torch_contender(name, layer_sizes, batch, train)
    elif name.startswith("limit"):
        run_epoch = limit_contender(layer_sizes, batch, steps_per_epoch(len(train), batch))
    else:
        run_epoch = tensorflow_contender(name, layer_sizes, batch, train)
    run_epoch(0)  # tracing, compiling, first-touch of memory
    print(json.dumps({"ready": True, "xla_flags": os.environ.get("XLA_FLAGS", "")}), flush=True)
    for epoch, _ in enumerate(sys.stdin, start=1):
        started = time.perf_counter()
        run_epoch(epoch)
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)


# ------------------------------------------------------------------ the driver


def start_worker(name: str, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": USERS_XLA_FLAGS}  # each worker's digits.runtime adds the project's flags itself
    if name == PROJECT_CPU_SPECIFIC:
        env["DIGITS_SAME_BITS"] = "0"
    if name in DEFAULT_FLAGS:
        env["XLA_FLAGS"] = f"{USERS_XLA_FLAGS} --xla_cpu_multi_thread_eigen=true".strip()  # XLA's default, stated so that digits.runtime leaves it
        env["DIGITS_SAME_BITS"] = "0"  # and none of the same-bits flags
    command = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch), "--hidden", *map(str, args.hidden)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def ask(process: subprocess.Popen, name: str, line: str | None = None) -> dict:
    if line is not None:
        process.stdin.write(line + "\n")
        process.stdin.flush()
    reply = process.stdout.readline()
    if not reply:
        raise SystemExit(f"error: the worker for {name!r} stopped (see its stderr above)")
    return json.loads(reply)


def installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs per contender, one per round (after a warm-up)")
    parser.add_argument("--hidden", type=int, nargs="*", default=[256, 128], help="hidden layer sizes (default 256 128)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between two contenders' epochs")
    parser.add_argument("--skip", nargs="*", default=[], help="contenders to leave out, by the start of their name (e.g. eager)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    layer_sizes = [784, *args.hidden, 10]
    if args.worker:
        return worker(args.worker, layer_sizes, args.batch)

    from digits.data import load_split
    from digits.data import steps_per_epoch

    examples = len(load_split("train"))
    steps = steps_per_epoch(examples, args.batch)
    names = [name for name in CONTENDERS if not any(name.startswith(skip) for skip in args.skip)]
    if not installed("jax"):
        print("jax is not installed (make bench installs it from requirements-bench.txt): its contenders are left out")
        names = [name for name in names if name not in NEEDS_JAX]
    if not installed("torch"):
        print("torch is not installed (make bench-torch installs it from requirements-torch.txt): its contenders are left out")
        names = [name for name in names if name not in NEEDS_TORCH]
    gflop = matmul_flops_per_example(layer_sizes) * examples / 1e9
    print(f"net {'-'.join(map(str, layer_sizes))}, {examples} images, batch {args.batch}, {steps} steps per epoch "
          f"(jax: {examples // args.batch} full batches), {os.cpu_count()} CPUs, {args.rounds} rounds")
    print(f"matmul work per epoch: {gflop:.1f} GFLOP ({matmul_flops_per_example(layer_sizes) / 1e6:.3f} MFLOP per example)")

    workers = {name: start_worker(name, args) for name in names}
    for name, process in workers.items():  # warm up one at a time, so compiling does not share the cores
        ready = ask(process, name)
        print(f"ready: {name} (XLA_FLAGS={ready['xla_flags'] or 'none'})", flush=True)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(1, args.rounds + 1):
        for name, process in workers.items():
            time.sleep(args.pause)  # let the last contender's thread pools go idle before the next one starts
            times[name].append(ask(process, name, "epoch")["seconds"])
        print(f"round {round_}: " + ", ".join(f"{name} {times[name][-1]:.3f}" for name in names), flush=True)
    for process in workers.values():
        process.stdin.close()
        process.wait()

    print(f"\n{'contender':40s} {'min':>7s} {'median':>7s} {'max':>7s}  s/epoch   GFLOP/s (median)")
    for name in names:
        median = statistics.median(times[name])
        print(f"{name:40s} {min(times[name]):7.3f} {median:7.3f} {max(times[name]):7.3f}  {gflop / median:8.1f}")

    def median_ratio(numerator: list[float], denominator: list[float]) -> float:
        return statistics.median(a / b for a, b in zip(numerator, denominator))

    if PROJECT not in times:
        raise SystemExit(f"error: the ratios need {PROJECT!r}, which --skip left out")
    ours = times[PROJECT]
    limit = min((times[name] for name in (LIMIT, LIMIT_DEFAULT) if name in times), key=statistics.median, default=None)
    ratio_keras = median_ratio(ours, times[KERAS]) if KERAS in times else math.nan
    ratio_jax = median_ratio(ours, times[JAX]) if JAX in times else math.nan
    ratio_torch = median_ratio(ours, times[TORCH_COMPILE]) if TORCH_COMPILE in times else math.nan
    fraction = median_ratio(limit, ours) if limit else math.nan
    if JAX_PROJECT_FLAGS in times:
        print(f"this project / jax with the project's XLA flags: {median_ratio(ours, times[JAX_PROJECT_FLAGS]):.4f}")
    if PROJECT_CPU_SPECIFIC in times:
        print(f"same bits / CPU-specific (DIGITS_SAME_BITS=0): {median_ratio(ours, times[PROJECT_CPU_SPECIFIC]):.4f}")
    print(f"ratio_vs_keras_fit={ratio_keras:.4f}")
    print(f"ratio_vs_jax={ratio_jax:.4f}")
    print(f"ratio_vs_torch_compile={ratio_torch:.4f}")
    print(f"fraction_of_limit={fraction:.4f}")


if __name__ == "__main__":
    main()
