"""Do train and evaluate write the same bits on other CPUs and thread counts? Train and compare.

One short run with every training feature on (dropout, affine and elastic
augmentation, weight decay, Nesterov momentum, label smoothing, max-norm,
weight averaging, ``keep: best``) and test-time augmentation is prepared
once, then trained, evaluated and exported by the real stages,
``python -m stages.train``, ``stages.evaluate`` and ``stages.export``:

- natively, once per intra-op thread count (``TF_NUM_INTRAOP_THREADS``);
- under ``qemu-x86_64 -cpu MODEL`` (Debian's qemu-user) for each CPU model:
  the program then sees that CPU's name, caches and instruction sets (TCG
  emulates AVX2 and FMA but no AVX-512, so the native run covers AVX-512);
- under ``qemu-aarch64 -cpu MODEL`` for each ARM64 CPU model, with the
  aarch64 Python and pinned packages that ``make aarch64``
  (tools/aarch64_python.sh) builds in ``.aarch64/``: NEON (neoverse-n1,
  cortex-a72), 512-bit SVE (a64fx) and SME (max, as Apple M4-class chips).

Each run's outputs (weights, SavedModel, metrics, plots) are hashed and
compared with the first run's. The last line is ``same_bits=true`` or
``same_bits=false``; the exit status is 1 when any output differs.

    python tools/same_bits.py   # 1 2 3 4 8 threads, 3 emulated x86 CPUs, 4 emulated ARM64 CPUs
    python tools/same_bits.py --threads 2 --cpus --arm-cpus max   # native against Apple-M4-like SME alone
    python tools/same_bits.py --threads 2 --cpus EPYC-Rome --hidden 1024 1024 --epochs 2   # the best recipe's net

Emulation is slow: TensorFlow starts in ~20 s under it, and each stage
compiles its XLA programs anew. ``--jobs`` runs that many at once.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.scratch import (  # noqa: E402
    EVERY_AUGMENTATION,
    EVERY_TRAINING_FEATURE,
    run_stage,
    shipped_params,
    stage_command,
    stage_env,
    with_changes,
    write_params,
)

DEFAULT_THREADS = (1, 2, 3, 4, 8)
# AMD Zen 2, Intel Haswell, Hygon (a Zen licensee). qemu 7.2 mis-runs code built for later Intel
# models (docs/reproducibility.md): Skylake crashes with DIGITS_SAME_BITS=0 too.
DEFAULT_CPUS = ("EPYC-Rome", "Haswell-v4", "Dhyana-v2")
# Graviton 2 (NEON), Fujitsu A64FX (512-bit SVE), Raspberry Pi 4, and every extension qemu has (SME: Apple M4-class).
DEFAULT_ARM_CPUS = ("neoverse-n1", "a64fx", "cortex-a72", "max")
AARCH64_DIR = ROOT / ".aarch64"  # made by `make aarch64` (tools/aarch64_python.sh)
FAILED = "failed"
OUTPUTS = (
    "models/weights.npz",
    "models/saved_model",
    "metrics/train.json",
    "metrics/evaluate.json",
    "plots/train_history.csv",
    "plots/augmented.png",
    "plots/confusion.csv",
    "plots/misclassified.png",
)
# Every training feature on, at the best recipe's strengths
FEATURES = {
    "model": {"init": "he", "init_seed": 1},
    "train": {**EVERY_TRAINING_FEATURE, "batch_size": 128},
    "augment": EVERY_AUGMENTATION,
    "tta": {"views": [{"shift": [1.0, 0.0]}, {"rotation": -6.0}, {"scale": 0.95}], "export": True},
}


@dataclass(frozen=True)
class Run:
    """One way to run the stages: natively with a thread count, or under an emulated CPU."""

    name: str
    launcher: tuple[str, ...] = ()
    threads: int | None = None
    python: str = sys.executable


def qemu_available() -> bool:
    return shutil.which("qemu-x86_64") is not None


def aarch64_python_path(directory: Path = AARCH64_DIR) -> Path:
    return directory / "venv" / "bin" / "python"


def aarch64_python(directory: Path = AARCH64_DIR) -> Path | None:
    """The aarch64 Python that ``make aarch64`` builds, if it is there and qemu-aarch64 can run it."""
    python = aarch64_python_path(directory)
    return python if python.exists() and shutil.which("qemu-aarch64") else None


def run_params(*, hidden: list[int], epochs: int, train_size: int, test_size: int) -> dict:
    """The shipped params with every feature on (FEATURES), on a slice, for ``epochs``."""
    sizes = {
        "data": {"train_size": train_size, "test_size": test_size, "val_size": train_size // 5},
        "model": {"hidden": hidden},
        # a warm-up must end before the run does
        "train": {"epochs": epochs, "warmup_epochs": min(FEATURES["train"]["warmup_epochs"], epochs - 1)},
    }
    return with_changes(with_changes(shipped_params(), FEATURES), sizes)


def thread_env(threads: int | None) -> dict[str, str]:
    """A stage's environment with ``threads`` intra-op threads, or TensorFlow's own choice (None)."""
    if threads is None:
        return stage_env(drop=["TF_NUM_INTRAOP_THREADS"])
    return stage_env({"TF_NUM_INTRAOP_THREADS": str(threads)})


def run_stages(run: Run, prepared: Path, workdir: Path) -> None:
    """Train, evaluate and export in ``workdir`` on a copy of the prepared data, the way ``run`` says."""
    shutil.copytree(prepared / "data" / "prepared", workdir / "data" / "prepared")
    shutil.copy(prepared / "params.yaml", workdir / "params.yaml")
    for stage in ("train", "evaluate", "export"):
        command = stage_command(f"stages.{stage}", python=run.python, launcher=run.launcher)
        result = subprocess.run(command, cwd=workdir, env=thread_env(run.threads), capture_output=True, text=True)
        if result.returncode != 0:
            noise = "TCG doesn't support requested feature"  # qemu's note on every thread it starts
            errors = "\n".join(line for line in result.stderr.splitlines() if noise not in line)
            raise RuntimeError(f"{run.name}: stages.{stage} failed ({result.returncode}):\n{errors[-2000:]}")


def digest(path: Path) -> str:
    """sha256 of a file, or of a directory's files (names and bytes, in sorted order)."""
    hasher = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        hasher.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        hasher.update(file.read_bytes())
    return hasher.hexdigest()[:16]


def output_digests(workdir: Path) -> dict[str, str]:
    return {output: digest(workdir / output) for output in OUTPUTS}


def prepare(workdir: Path, **sizes) -> None:
    write_params(workdir, run_params(**sizes))
    run_stage("stages.prepare", workdir, drop=["TF_NUM_INTRAOP_THREADS"], check=True)


def compare(
    runs: list[Run], *, hidden: list[int], epochs: int, train_size: int, test_size: int, jobs: int
) -> dict[str, dict[str, str]]:
    """Each run's output digests, keyed by run name, all from the same prepared data."""
    with tempfile.TemporaryDirectory(prefix="same-bits-") as temporary:
        root = Path(temporary)
        (root / "prepared").mkdir()
        prepare(root / "prepared", hidden=hidden, epochs=epochs, train_size=train_size, test_size=test_size)

        def one(run: Run) -> tuple[str, dict[str, str]]:
            workdir = root / run.name
            workdir.mkdir()
            try:
                run_stages(run, root / "prepared", workdir)
            except RuntimeError as failure:  # one run's crash is a finding, not the end of the comparison
                return run.name, {FAILED: str(failure)}
            return run.name, output_digests(workdir)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return dict(pool.map(one, runs))


def differences(results: dict[str, dict[str, str]]) -> list[str]:
    """'run: output' for every output that differs from the first run's, and 'run: failed ...' for a run that did not
    finish.
    """
    reference = next(iter(results.values()))
    found = []
    for name, digests in results.items():
        if FAILED in digests:
            found.append(f"{name}: failed: {digests[FAILED].splitlines()[-1]}")
            continue
        found += [f"{name}: {output}" for output, value in digests.items() if value != reference.get(output)]
    return found


def planned_runs(
    threads: list[int], cpus: list[str], arm_cpus: list[str] = (), *, aarch64: Path = AARCH64_DIR
) -> list[Run]:
    runs = [Run(f"native-{count}-threads", threads=count) for count in threads]
    runs += [Run(f"qemu-{model}", launcher=("qemu-x86_64", "-cpu", model)) for model in cpus]
    arm_python = str(aarch64_python_path(aarch64))
    return runs + [
        Run(f"arm64-{model}", launcher=("qemu-aarch64", "-cpu", model, "-L", str(aarch64 / "root")), python=arm_python)
        for model in arm_cpus
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=list(DEFAULT_THREADS),
        help="native runs, one per intra-op thread count",
    )
    parser.add_argument(
        "--cpus",
        nargs="*",
        default=list(DEFAULT_CPUS),
        help="emulated runs, one per qemu -cpu model (qemu-x86_64 -cpu help)",
    )
    parser.add_argument(
        "--arm-cpus",
        nargs="*",
        default=list(DEFAULT_ARM_CPUS),
        help="emulated ARM64 runs, one per qemu-aarch64 -cpu model",
    )
    parser.add_argument(
        "--aarch64", type=Path, default=AARCH64_DIR, help="the aarch64 Python's folder (make aarch64 builds .aarch64/)"
    )
    parser.add_argument("--hidden", type=int, nargs="*", default=[64, 32])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=1500)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (each emulated run keeps one core busy)")
    args = parser.parse_args()
    if args.cpus and not qemu_available():
        print("qemu-x86_64 is not installed (Debian: apt-get install qemu-user): the emulated CPUs are left out")
        args.cpus = []
    if args.arm_cpus and not aarch64_python(args.aarch64):
        print(
            f"no aarch64 Python in {args.aarch64} (make aarch64 builds it, with qemu-user): the emulated ARM64 CPUs "
            "are left out"
        )
        args.arm_cpus = []
    runs = planned_runs(args.threads, args.cpus, args.arm_cpus, aarch64=args.aarch64.resolve())
    print(
        f"net 784-{'-'.join(map(str, args.hidden))}-10, {args.epochs} epochs on {args.train_size} images, every "
        "training feature on; "
        f"{len(runs)} runs: {', '.join(run.name for run in runs)}",
        flush=True,
    )
    results = compare(
        runs,
        hidden=args.hidden,
        epochs=args.epochs,
        train_size=args.train_size,
        test_size=args.test_size,
        jobs=args.jobs,
    )
    print(f"\n{'run':28s} " + " ".join(f"{Path(output).name[:16]:>16s}" for output in OUTPUTS))
    for name, digests in results.items():
        print(f"{name:28s} " + " ".join(f"{digests.get(output, FAILED):>16s}" for output in OUTPUTS))
    different = differences(results)
    for line in different:
        print(f"differs: {line}")
    print(f"same_bits={str(not different).lower()}")
    sys.exit(1 if different else 0)


if __name__ == "__main__":
    main()
