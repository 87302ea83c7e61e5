"""TensorFlow, started the way every stage, benchmark and test here needs it.

Import it from here (``from digits.runtime import tf``), before anything else
that imports TensorFlow (keras does), so that two things happen first:

**A quiet start.** TensorFlow's C++ side logs to stderr while it loads and
while it looks for a GPU, before its own log level applies (absl writes
everything logged before ``absl::InitializeLog``): five to eight lines on a
machine without a GPU, among them ``E0000 ... failed call to cuInit: ...
CUDA error``. A user who reads an error line on every run learns to ignore
stderr, which is where this project's own errors go. So the import and the
device discovery run with stderr captured, and what was captured is passed
on without TensorFlow's informational and warning log lines and without the
expected "no GPU here" cuInit error; anything else (a real error, a Python
warning, a traceback) still shows. ``TF_CPP_MIN_LOG_LEVEL`` defaults to 2
(errors only) for the rest of the run. ``DIGITS_TF_LOGS=1`` turns all of it
off: TensorFlow logs everything, as it would on its own.

**XLA's CPU flags.** The training epoch is XLA-compiled (digits.training). By
default XLA's CPU backend splits every matmul across the intra-op threads
(Eigen's multi-threaded contraction). A step of this project's networks is a
chain of small matmuls (at most 128x784 by 784x256 for the default net), and
splitting each over two cores costs more in hand-offs than it gains. With
``--xla_cpu_multi_thread_eigen=false`` each matmul runs whole on one thread
and XLA's executor runs the independent ones side by side (each layer's
weight gradient beside its input gradient). On the 2-core machine that made
an epoch of the default net 0.55 s instead of 0.60 s. A 784-1024-1024-10
net's matmuls are big enough to split well, and there XLA's default was as
fast or faster (4.64 s against 5.10 s in one run): ``python
benchmarks/train_speed.py [--hidden ...]`` times both. A flag already set in
``XLA_FLAGS`` wins, so ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=true``
restores XLA's default. Results do not depend on this flag, but they do on the number of
intra-op threads (cores, or ``TF_NUM_INTRAOP_THREADS``): see the README's
"Speed" section.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_SWITCH = "DIGITS_TF_LOGS"
# XLA flags this project sets unless XLA_FLAGS already names them (XLA reads them once, at its first compile).
XLA_CPU_FLAGS = {"--xla_cpu_multi_thread_eigen": "false"}
# What TensorFlow prints while it starts that is not worth a user's attention.
START_UP_NOISE = re.compile(
    r"[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "                          # absl INFO/WARNING lines (cudart stub, oneDNN notice, ...)
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit"      # "no GPU driver": expected on a CPU machine
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"  # 2nd line of the CPU-feature notice
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_SWITCH, "") not in ("", "0")


def configure_xla_cpu() -> None:
    """Add the project's XLA CPU flags to ``XLA_FLAGS``, leaving any the user set."""
    current = os.environ.get("XLA_FLAGS", "")
    added = [f"{flag}={value}" for flag, value in XLA_CPU_FLAGS.items() if flag not in current]
    if added:
        os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()


@contextmanager
def start_up_noise_removed() -> Iterator[None]:
    """Capture the process's stderr (file descriptor 2, where C++ writes) and pass on all but START_UP_NOISE."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not START_UP_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


configure_xla_cpu()
if verbose() or "tensorflow" in sys.modules:
    import tensorflow as tf
else:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ.get("TF_CPP_MIN_LOG_LEVEL") or "2"
    with start_up_noise_removed():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the GPU search (cuInit) happens here, still inside the capture

__all__ = ["tf", "configure_xla_cpu", "start_up_noise_removed"]
