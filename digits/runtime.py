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

**The same bits on every x86-64 and ARM64 CPU.** The training epoch,
validation, evaluation and the augmentation plot are XLA-compiled, and these
flags make XLA's code a function of the program alone, not of the CPU it runs
on, its vector width or its thread count (docs/reproducibility.md has the
measurements). The program does its part: every sum that reaches an output
runs in a fixed order (digits.reductions), no matmul sums more than 512
terms in one piece (digits.model), sin, cos, tan and powers are the
project's own (digits.fixed_math), and every addition in the augmentation
adds at most one product, which LLVM fuses into an FMA the same way on
every CPU:

- ``--xla_cpu_experimental_ynn_fusion_type=dot``: every matmul runs in
  YNNPACK (an XLA library fusion), on all intra-op threads. Its results
  matched on every CPU and thread count tried: AVX-512 natively, AVX2 on
  three emulated CPUs with other cache sizes, 1 to 8 threads. XLA's default
  hands matmuls to Eigen, whose blocking of k follows the cache sizes CPUID
  reports, the thread count and the vector ISA: the same program gave three
  different results on three CPU types.
- ``--xla_disable_hlo_passes=transpose-folding``: YNNPACK takes a
  transposed right operand but not a transposed left one. digits.model's
  weight gradient transposes the layer's inputs explicitly; without this
  flag XLA folds that transpose back into the dot, which then goes to Eigen.
- ``xla_force_enable_experimental_llvm_ir_gemm`` (with
  ``--xla_cpu_multi_thread_eigen=false``, which it needs): a plain matmul
  that YNNPACK does not take becomes XLA's own tiled GEMM, single-threaded,
  whose tiles are fixed when it compiles; none is left in this project's
  programs (tests/test_training.py), this is the net under them.
- ``--xla_cpu_prefer_vector_width=512``: XLA's code uses the machine's
  own vectors, AVX-512 where there is one (XLA's default stops at 256
  bits); NEON's 128 bits on ARM. With the program's part above, widths of
  128, 256 and 512 bits gave the same bits (tests/test_reductions.py).
  Earlier the ISA was capped at AVX2, because XLA's reductions and two
  products fused differently at each width.
- ``--xla_cpu_enable_platform_dependent_math=false``: no instruction whose
  result differs between CPU makers (approximate reciprocals, say).

One flag is for speed only (it moves no bits):
``--xla_cpu_copy_insertion_use_region_analysis=true`` lets XLA see that a
weight's reads in a step all come before its in-place update, so it stops
copying every hidden weight matrix at each step (4 MiB for the 1024-1024
net's W1; tests/test_trainer.py).

With each matmul alone in its YNNPACK call (digits.model.alone), an epoch
takes about as long as with Eigen's matmuls (docs/speed.md;
benchmarks/train_speed.py times both). ``DIGITS_SAME_BITS=0`` turns all of
it off for a CPU-specific run (dvc.lock will then differ from the committed
one). A flag already set in ``XLA_FLAGS`` wins.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_SWITCH = "DIGITS_TF_LOGS"
SAME_BITS_SWITCH = "DIGITS_SAME_BITS"
# XLA flags this project sets unless XLA_FLAGS already names them (XLA reads them once, at its first compile).
GEMM_TILE = "6:4:2*vectwidth"  # rows : k per step : vectors of columns; the fastest measured on the 2-core machine
SAME_BITS_XLA_FLAGS = {
    "--xla_cpu_experimental_ynn_fusion_type": "dot",
    "--xla_disable_hlo_passes": "transpose-folding",
    "--xla_cpu_multi_thread_eigen": "false",
    "--xla_backend_extra_options": f"xla_force_enable_experimental_llvm_ir_gemm,xla_llvm_ir_gemm_tile_size={GEMM_TILE}",
    "--xla_cpu_prefer_vector_width": "512",
    "--xla_cpu_enable_platform_dependent_math": "false",
    "--xla_cpu_copy_insertion_use_region_analysis": "true",
}
FAST_XLA_FLAGS = {"--xla_cpu_multi_thread_eigen": "false"}
# What TensorFlow prints while it starts that is not worth a user's attention.
START_UP_NOISE = re.compile(
    r"[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\] "  # absl INFO/WARNING lines (cudart stub, oneDNN notice, ...)
    r"|E\d{4} [\d:.]+ +\d+ \S+:\d+\] failed call to cuInit"  # "no GPU driver": expected on a CPU machine
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    # 2nd line of the CPU-feature notice
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_SWITCH, "") not in ("", "0")


def same_bits() -> bool:
    """False only when the user asked for CPU-specific speed with DIGITS_SAME_BITS=0."""
    return os.environ.get(SAME_BITS_SWITCH, "1").strip() != "0"


def configure_xla_cpu() -> None:
    """Add the project's XLA CPU flags to ``XLA_FLAGS``, leaving any the user set."""
    current = os.environ.get("XLA_FLAGS", "")
    flags = SAME_BITS_XLA_FLAGS if same_bits() else FAST_XLA_FLAGS
    added = [f"{flag}={value}" for flag, value in flags.items() if flag not in current]
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

__all__ = ["configure_xla_cpu", "same_bits", "start_up_noise_removed", "tf"]
