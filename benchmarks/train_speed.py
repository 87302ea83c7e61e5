"""Seconds per epoch of this project's training loop against its peers, side by side.

The same net (784-256-128-10 by default, ``--hidden 1024 1024`` for a wider
one), batch (128), prepared MNIST (``data/prepared/train.npz``: run
``dvc repro prepare`` first) and plain SGD, one contender per worker process:

- eager: the seeds' loop, a Python for over batches, GradientTape, assign_sub
- tf.function per step: the same step compiled, still one Python call a batch
- this project: digits.trainer.Trainer, one XLA-compiled call per epoch, with
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
Before them, how far each of these ratios moved from round to round (median,
middle half, min-max): on a noisy machine, a median near 1.0 says little
without it.

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

from contenders import (  # noqa: E402
    CONTENDERS,
    DEFAULT_FLAGS,
    JAX,
    JAX_PROJECT_FLAGS,
    KERAS,
    LIMIT,
    LIMIT_DEFAULT,
    NEEDS_JAX,
    NEEDS_TORCH,
    PROJECT,
    PROJECT_CPU_SPECIFIC,
    TORCH_COMPILE,
    jax_contender,
    limit_contender,
    matmul_flops_per_example,
    tensorflow_contender,
    torch_contender,
)


def worker(name: str, layer_sizes: list[int], batch: int) -> None:
    """Build one contender, warm it up, then time one epoch per line read from stdin."""
    import digits.runtime  # noqa: F401 - adds the project's XLA flags (unless XLA_FLAGS names them) before JAX or TensorFlow compiles

    from digits.data import load_split, steps_per_epoch

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
        # XLA's default, stated so that digits.runtime leaves it
        env["XLA_FLAGS"] = f"{USERS_XLA_FLAGS} --xla_cpu_multi_thread_eigen=true".strip()
        env["DIGITS_SAME_BITS"] = "0"  # and none of the same-bits flags
    command = [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--batch",
        str(args.batch),
        "--hidden",
        *map(str, args.hidden),
    ]
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
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed epochs per contender, one per round (after a warm-up)"
    )
    parser.add_argument(
        "--hidden", type=int, nargs="*", default=[256, 128], help="hidden layer sizes (default 256 128)"
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between two contenders' epochs")
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        help="contenders to leave out, by the start of their name, in any case (e.g. eager keras)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    layer_sizes = [784, *args.hidden, 10]
    if args.worker:
        return worker(args.worker, layer_sizes, args.batch)

    from digits.data import load_split, steps_per_epoch

    examples = len(load_split("train"))
    steps = steps_per_epoch(examples, args.batch)
    names = [name for name in CONTENDERS if not any(name.lower().startswith(skip.lower()) for skip in args.skip)]
    if not installed("jax"):
        print("jax is not installed (make bench installs it from requirements-bench.txt): its contenders are left out")
        names = [name for name in names if name not in NEEDS_JAX]
    if not installed("torch"):
        print(
            "torch is not installed (make bench-torch installs it from requirements-torch.txt): its contenders are "
            "left out"
        )
        names = [name for name in names if name not in NEEDS_TORCH]
    gflop = matmul_flops_per_example(layer_sizes) * examples / 1e9
    print(
        f"net {'-'.join(map(str, layer_sizes))}, {examples} images, batch {args.batch}, {steps} steps per epoch "
        f"(jax: {examples // args.batch} full batches), {os.cpu_count()} CPUs, {args.rounds} rounds"
    )
    print(
        f"matmul work per epoch: {gflop:.1f} GFLOP ({matmul_flops_per_example(layer_sizes) / 1e6:.3f} MFLOP per "
        "example)"
    )

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

    def per_round(numerator: list[float], denominator: list[float]) -> list[float]:
        return [a / b for a, b in zip(numerator, denominator)]

    def median_ratio(numerator: list[float], denominator: list[float]) -> float:
        return statistics.median(per_round(numerator, denominator))

    def ratio_spread(label: str, numerator: list[float], denominator: list[float]) -> None:
        """How far a ratio moved from round to round: on a noisy machine, whether 1.0 is inside that is the answer."""
        ratios = sorted(per_round(numerator, denominator))
        low, _, high = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else ratios * 3
        print(
            f"{label} per round: median {statistics.median(ratios):.3f}, middle half {low:.3f}-{high:.3f}, "
            f"min-max {ratios[0]:.3f}-{ratios[-1]:.3f}"
        )

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
    for label, numerator, denominator in [
        ("this project / jax", ours, times.get(JAX)),
        ("this project / torch.compile", ours, times.get(TORCH_COMPILE)),
        ("limit / this project", limit, ours),
    ]:
        if numerator and denominator:
            ratio_spread(label, numerator, denominator)
    print(f"ratio_vs_keras_fit={ratio_keras:.4f}")
    print(f"ratio_vs_jax={ratio_jax:.4f}")
    print(f"ratio_vs_torch_compile={ratio_torch:.4f}")
    print(f"fraction_of_limit={fraction:.4f}")


if __name__ == "__main__":
    main()
