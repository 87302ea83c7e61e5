"""The best recipe end to end: prepare, train, evaluate and the committee in a temporary directory, timed.

Prints every epoch's validation accuracy with the seconds since training
started, when validation first reached 99.0, 99.3 and 99.5 %, the train
wall time (every committee member's train stage, one after another), the
weights digests (equal digests = bit-identical runs), and the test accuracy
of the prediction (the committee's, test-time augmented as the recipe says)
beside the network alone. ``--repeats N`` runs N independent seed sets
(every seed of run r moved by 100 r) and ends with their mean, standard
deviation, min and max; the last line is ``mean_test_accuracy=<float>``.
``--first-repeat R`` starts at run R, to add seed sets to earlier runs.

    # the recipe as in docs/results.md, three seed sets (about 70 min)
    python benchmarks/best_mlp.py --repeats 3 --test-curve
    # a committee of two half-length networks
    python benchmarks/best_mlp.py -S 'committee.members=[1]' -S train.epochs=150
    # kill -9 the train stage after epoch 120, rerun it, compare
    python benchmarks/best_mlp.py --kill-at-epoch 120
    # seconds per epoch with augmentation and dropout off and on
    python benchmarks/best_mlp.py --speed-only

Run it on an idle machine: the wall times are the figures.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from digits.artifacts import load_npz, save_npz
from digits.committee import member_params, member_root
from digits.params import parse_params
from digits.scratch import run_stage, shipped_params, stage_command, stage_env, with_changes, write_params

# docs/results.md's "Best results" command passes exactly these to `dvc exp run -S` (tests/test_benchmarks.py checks).
BEST_RECIPE = [
    "model.hidden=[1024,1024]",
    "model.init=he",
    "train.optimizer=momentum",
    "train.nesterov=true",
    "train.lr=0.05",
    "train.warmup_epochs=2",
    "train.batch_size=128",
    "train.epochs=300",
    "train.weight_decay=2e-05",
    "train.ema_decay=0.999",
    "train.dropout_input=0.0",
    "train.dropout_hidden=0.2",
    "augment.rotation=12.0",
    "augment.scale=0.1",
    "augment.shift=2.0",
    "augment.elastic_alpha=30.0",
    "augment.elastic_sigma=5.0",
]
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): .* val loss \S+ acc (\S+)")
DIGEST_LINE = re.compile(r"weights sha256 (\w+)")
SPEED_EPOCHS, SPEED_ROUNDS = 4, 2  # per process the first, compiling epoch is left out
SEED_SET_STRIDE = 100  # --repeats: run r moves every seed by 100 r, clear of committee members' 1, 2, ...


def write_recipe_params(workdir: Path, overrides: list[str], *, seed_offset: int = 0) -> dict:
    """params.yaml with the overrides, every training seed moved by ``seed_offset`` (as a committee member's are), in
    ``workdir``.
    """
    params = member_params(parse_params(with_changes(shipped_params(), overrides=overrides)), seed_offset).model_dump()
    write_params(workdir, params)
    return params


def run_train(
    workdir: Path,
    *,
    member: int,
    kill_at_epoch: int | None,
    started: float,
    reached: dict[float, float | None],
    curve: list[tuple[int, float, Path]] | None = None,
    activation: str = "relu",
) -> tuple[int, str]:
    """Run the train stage (of committee ``member``), echoing epochs with elapsed seconds; (return code, weights
    digest).

    With ``curve`` (a list), each epoch's validated weights are copied out of the checkpoint for test scoring after the
    run.
    """
    process = subprocess.Popen(
        stage_command("stages.train", "--member", str(member)),
        cwd=workdir,
        env=stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    digest = ""
    for line in process.stdout:
        elapsed = time.perf_counter() - started
        if match := EPOCH_LINE.match(line):
            epoch, val_accuracy = int(match[1]), float(match[3])
            print(f"{elapsed:8.1f} s  member {member}  epoch {epoch:4d}  val_accuracy {val_accuracy:.4f}", flush=True)
            for target in reached:
                if val_accuracy >= target and reached[target] is None:
                    reached[target] = elapsed
            if curve is not None:
                curve.append(
                    (
                        epoch,
                        elapsed,
                        copy_validated_weights(workdir / member_root(member), epoch, activation=activation),
                    )
                )
            if epoch == kill_at_epoch:
                process.send_signal(signal.SIGKILL)
                print(f"{elapsed:8.1f} s  kill -9 after epoch {epoch}", flush=True)
        else:
            print(f"         {line.rstrip()}", flush=True)
            digest = match[1] if (match := DIGEST_LINE.search(line)) else digest
    return process.wait(), digest


def copy_validated_weights(root: Path, epoch: int, *, activation: str) -> Path:
    """The weights the epoch was validated on (the average, if kept), from the checkpoint written just before its line.

    Written as the train stage writes models/weights.npz (``activation``: the run's ``model.activation``).
    """
    arrays = load_npz(root / "models/checkpoint.npz")  # headers checked, never unpickled
    prefix = "average/" if any(name.startswith("average/") for name in arrays) else "model/"
    path = root / "curve" / f"epoch{epoch:04d}.npz"
    path.parent.mkdir(exist_ok=True)
    weights = {name.removeprefix(prefix): array for name, array in arrays.items() if name.startswith(prefix)}
    save_npz(path, {**weights, "activation": np.array(activation)})
    return path


def first_test_pass(workdir: Path, curve: list[tuple[int, float, Path]], target: float) -> str:
    """When the run's network first scored ``target`` on the test set (each epoch's copied weights, scored after the
    run).
    """
    code = """
import sys, numpy as np
from digits.data import load_split
from digits.model import load_weights, predict_logits
test = load_split("test")
for path in sys.argv[1:]:
    print(float(np.mean(predict_logits(load_weights(path), test.images).argmax(1) == test.classes)), flush=True)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, *(str(path) for _, _, path in curve)],
        cwd=workdir,
        env=stage_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    for (epoch, elapsed, _), accuracy in zip(curve, map(float, result.stdout.split())):
        if accuracy >= target:
            return (
                f"test accuracy first >= {target:.1%}: epoch {epoch}, {elapsed:.0f} s into training "
                f"({accuracy:.4f}, plain network)"
            )
    return f"test accuracy first >= {target:.1%}: never"


def run_recipe(
    workdir: Path, overrides: list[str], *, seed_offset: int, kill_at_epoch: int | None, test_curve: bool
) -> dict:
    """prepare, train (and each committee member), evaluate and the committee in ``workdir``; the run's figures."""
    params = write_recipe_params(workdir, overrides, seed_offset=seed_offset)
    members = [0, *params["committee"]["members"]]
    run_stage("stages.prepare", workdir, check=True)
    reached: dict[float, float | None] = {0.99: None, 0.993: None, 0.995: None}
    curve: list[tuple[int, float, Path]] | None = [] if test_curve else None
    started = time.perf_counter()
    digests = []
    for member in members:
        code, digest = run_train(
            workdir,
            member=member,
            kill_at_epoch=kill_at_epoch,
            started=started,
            reached=reached,
            curve=curve if member == 0 else None,
            activation=params["model"]["activation"],
        )
        if kill_at_epoch is not None:
            print(
                f"train stage exited with {code} (-9 = killed); rerunning it, which resumes from its checkpoint",
                flush=True,
            )
            code, digest = run_train(workdir, member=member, kill_at_epoch=None, started=started, reached=reached)
        if code != 0:
            sys.exit(f"train stage (member {member}) failed with exit code {code}")
        digests.append(digest)
    train_seconds = time.perf_counter() - started
    for stage in ("evaluate", "committee"):
        run_stage(f"stages.{stage}", workdir, timeout=None, check=True)
    train_metrics = json.loads((workdir / "metrics/train.json").read_text())
    test = json.loads((workdir / "metrics/committee.json").read_text())
    evaluate = json.loads((workdir / "metrics/evaluate.json").read_text())
    for target, seconds in reached.items():
        print(f"val_accuracy first >= {target:.1%}: " + (f"{seconds:.0f} s" if seconds is not None else "never"))
    if curve:
        print(first_test_pass(workdir, curve, 0.995))
    print(
        f"train wall time: {train_seconds:.0f} s ({train_seconds / 60:.1f} min), {len(members)} network(s), "
        f"{train_metrics['epochs_run']} epochs each, "
        f"kept epoch {train_metrics['kept_epoch']}; best val accuracy {train_metrics['best_val_accuracy']:.4f} at "
        f"epoch {train_metrics['best_epoch']}"
    )
    print(f"weights sha256 {' '.join(digests)}")
    plain = evaluate.get("plain", evaluate)
    print(
        f"test: accuracy {test['accuracy']:.4f}, {test['errors']} errors of {evaluate['examples']} "
        f"(network alone: {evaluate['accuracy']:.4f}; without test-time augmentation: {plain['accuracy']:.4f})",
        flush=True,
    )
    return {"accuracy": test["accuracy"], "errors": test["errors"], "train_seconds": train_seconds}


# The recipe's net, timed with parts of its per-batch work switched off.
SPEED_VARIANTS = {
    "plain (no augmentation, no dropout)": [
        "augment.rotation=0.0",
        "augment.scale=0.0",
        "augment.shift=0.0",
        "augment.shear=0.0",
        "augment.elastic_alpha=0.0",
        "train.dropout_input=0.0",
        "train.dropout_hidden=0.0",
    ],
    "augmentation, no dropout": ["train.dropout_input=0.0", "train.dropout_hidden=0.0"],
    "augmentation and dropout (the recipe)": [],
}


def seconds_per_epoch(overrides: list[str]) -> list[float]:
    """Seconds of each of SPEED_EPOCHS train epochs, in-process after a first compiling one."""
    code = f"""
import time
from digits.runtime import tf
from digits.data import load_split
from digits.params import load_params
from digits.trainer import Regularization
from digits.training import build_trainer, epoch_order
params = load_params()
augment, train_params = params.augment, params.train
train = load_split("train")
regularization = Regularization.from_params(train_params, augment, background=params.data.scale[0])
trainer = build_trainer(
    params.model, train_params, input_size=784, train_size=len(train), strategy=None, regularization=regularization
)
for epoch in range({SPEED_EPOCHS + 1}):
    started = time.perf_counter()
    trainer.train_epoch(train, epoch_order(len(train), seed=0, epoch=epoch + 1), epoch=epoch + 1)
    print(time.perf_counter() - started) if epoch else None
"""
    with tempfile.TemporaryDirectory() as workdir:
        write_recipe_params(Path(workdir), overrides)
        run_stage("stages.prepare", workdir, check=True)
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=workdir, env=stage_env(), check=True, capture_output=True, text=True
        )
    return [float(value) for value in result.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-S", "--set", dest="overrides", action="append", default=[], help="another override, as dvc exp run -S"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help=f"independent runs, every seed of run r moved by {SEED_SET_STRIDE} r"
    )
    parser.add_argument(
        "--first-repeat",
        type=int,
        default=0,
        metavar="R",
        help=f"start at run R (seeds moved by {SEED_SET_STRIDE} R): adds seed sets beside an earlier --repeats run",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the runs here (run0, run1, ...) instead of a temporary directory"
    )
    parser.add_argument(
        "--kill-at-epoch", type=int, help="SIGKILL the train stage after this epoch, then rerun it (it resumes)"
    )
    parser.add_argument(
        "--test-curve",
        action="store_true",
        help="also report when the test accuracy first reached 99.5 %% (scored after the run)",
    )
    parser.add_argument("--skip-speed", action="store_true", help="leave out the augmentation on/off epoch timing")
    parser.add_argument("--speed-only", action="store_true", help="only the augmentation on/off epoch timing")
    args = parser.parse_args()
    if args.repeats < 1 or args.first_repeat < 0:
        parser.error("--repeats must be at least 1 and --first-repeat at least 0")
    overrides = BEST_RECIPE + args.overrides
    if args.speed_only:
        print_speed(overrides)
        return

    print("recipe: dvc exp run " + " ".join(f"-S '{o}'" for o in overrides), flush=True)
    repeats = range(args.first_repeat, args.first_repeat + args.repeats)
    runs = []
    with tempfile.TemporaryDirectory() as temporary:
        for repeat in repeats:
            workdir = (args.workdir or Path(temporary)) / f"run{repeat}"
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"--- run {repeat + 1} of {repeats.stop}: every seed moved by {SEED_SET_STRIDE * repeat}", flush=True)
            runs.append(
                run_recipe(
                    workdir,
                    overrides,
                    seed_offset=SEED_SET_STRIDE * repeat,
                    kill_at_epoch=args.kill_at_epoch,
                    test_curve=args.test_curve,
                )
            )
    if not args.skip_speed:
        print_speed(overrides)

    accuracies = np.array([run["accuracy"] for run in runs])
    print(f"--- {len(runs)} runs")
    for repeat, run in zip(repeats, runs):
        print(
            f"run {repeat + 1}: test accuracy {run['accuracy']:.4f}, {run['errors']} errors, train "
            f"{run['train_seconds'] / 60:.1f} min"
        )
    print(
        f"test accuracy: mean {accuracies.mean():.4f}, std {accuracies.std(ddof=1) if len(runs) > 1 else 0.0:.4f}, "
        f"min {accuracies.min():.4f}, max {accuracies.max():.4f}; mean errors "
        f"{np.mean([run['errors'] for run in runs]):.1f}; "
        f"longest training {max(run['train_seconds'] for run in runs) / 60:.1f} min"
    )
    print(f"mean_test_accuracy={accuracies.mean():.4f}")


def print_speed(overrides: list[str]) -> None:
    """Seconds per epoch of the recipe's net with augmentation and dropout off, augmentation alone, and both."""
    times: dict[str, list[float]] = {label: [] for label in SPEED_VARIANTS}
    for _ in range(SPEED_ROUNDS):  # variants alternate, so a noisy spell hits them all
        for label, switched_off in SPEED_VARIANTS.items():
            times[label] += seconds_per_epoch(overrides + switched_off)
    print(
        f"seconds per epoch, median of {SPEED_ROUNDS} x {SPEED_EPOCHS} epochs (min, max), each variant in its own "
        "processes:"
    )
    medians = {label: sorted(seconds)[len(seconds) // 2] for label, seconds in times.items()}
    plain = next(iter(medians.values()))
    for label, seconds in times.items():
        print(
            f"  {label}: {medians[label]:.2f} ({min(seconds):.2f}, {max(seconds):.2f}), "
            f"{medians[label] / plain - 1:+.0%} vs plain"
        )


if __name__ == "__main__":
    main()
