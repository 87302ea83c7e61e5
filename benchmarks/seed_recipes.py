"""Reproduce each seed tutorial's recipe by params alone and measure its accuracy.

Each recipe is the list of ``-S key=value`` overrides that ``dvc exp run``
takes; this script applies them to params.yaml in a temporary directory and
runs prepare, train and evaluate there (what ``dvc exp run -S ...`` runs),
then prints a Markdown table for docs/results.md. Slow: several minutes.

    python benchmarks/seed_recipes.py [recipe-name ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digits.scratch import run_stage, scratch_workspace

# name: (what the seed did, the accuracy it reported, the overrides)
RECIPES: dict[str, tuple[str, str, list[str]]] = {
    "000-ce": (
        "784-256-128-10, trunc. normal 0.1, CE, SGD lr 1e-3 on the summed batch loss, batch 100, 50 epochs",
        "~98%",
        ["train.lr=0.1", "train.lr_schedule=constant", "train.batch_size=100", "train.epochs=50"],
    ),
    "000-mse": (
        "same net, MSE (mean), SGD lr 1e-3, batch 100, 50 epochs",
        "~80%",
        ["train.loss=mse", "train.lr=0.001", "train.lr_schedule=constant", "train.batch_size=100", "train.epochs=50"],
    ),
    "001-naive": (
        "784-512-10, uniform [0, 0.1] init, CE, SGD lr 1e-3, batch 128, 10 epochs",
        "84%",
        [
            "model.hidden=[512]",
            "model.init=uniform",
            "model.init_range=[0.0,0.1]",
            "train.lr=0.001",
            "train.lr_schedule=constant",
            "train.batch_size=128",
            "train.epochs=10",
        ],
    ),
    "001-keras": (
        "Keras Dense(512, relu), glorot init, rmsprop lr 1e-3, batch 128, 5 epochs",
        "97.9%",
        [
            "model.hidden=[512]",
            "model.init=glorot",
            "train.optimizer=rmsprop",
            "train.lr=0.001",
            "train.lr_schedule=constant",
            "train.batch_size=128",
            "train.epochs=5",
        ],
    ),
    "002-mse": (
        "784-256-128-10, inputs in [-0.5, 0.5], trunc. normal 0.1, MSE, SGD lr 1e-3, batch 256, 500 epochs (25 min)",
        "~90%",
        [
            "data.scale=[-0.5,0.5]",
            "train.loss=mse",
            "train.lr=0.001",
            "train.lr_schedule=constant",
            "train.batch_size=256",
            "train.epochs=500",
        ],
    ),
    "002-ce": (
        "same, cross-entropy, trained ~7 min (~140 of its epochs)",
        "~93%",
        [
            "data.scale=[-0.5,0.5]",
            "train.lr=0.001",
            "train.lr_schedule=constant",
            "train.batch_size=256",
            "train.epochs=140",
        ],
    ),
    "003-mse": (
        "784-256-128-10, trunc. normal 0.1, MSE, SGD lr 1e-3, batch 128, 10 epochs",
        "none (final batch loss ~0.088)",
        ["train.loss=mse", "train.lr=0.001", "train.lr_schedule=constant", "train.batch_size=128", "train.epochs=10"],
    ),
    "004-softmax": (
        "softmax regression 784-10 with a validation split, Adam",
        "none",
        [
            "model.hidden=[]",
            "train.optimizer=adam",
            "train.lr=0.001",
            "train.lr_schedule=constant",
            "train.batch_size=100",
            "train.epochs=20",
        ],
    ),
}


def run_recipe(overrides: list[str]) -> tuple[dict, dict, float]:
    """prepare, train and evaluate with the shipped params and ``overrides``: (evaluate's metrics, train's, seconds)."""
    with scratch_workspace(overrides=overrides) as workdir:
        started = time.perf_counter()
        for stage in ("prepare", "train", "evaluate"):
            run_stage(f"stages.{stage}", workdir, timeout=None, check=True)
        seconds = time.perf_counter() - started
        return (
            json.loads((workdir / "metrics/evaluate.json").read_text()),
            json.loads((workdir / "metrics/train.json").read_text()),
            seconds,
        )


def main() -> None:
    names = sys.argv[1:] or list(RECIPES)
    print("| seed | recipe | reported | `dvc exp run` line | measured test accuracy | final train loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        recipe, reported, overrides = RECIPES[name]
        evaluate, train, _ = run_recipe(overrides)
        command = "dvc exp run " + " ".join(f"-S '{o}'" for o in overrides)
        print(
            f"| {name} | {recipe} | {reported} | `{command}` | {evaluate['accuracy']:.2%} | {train['train_loss']:.4f} "
            "|",
            flush=True,
        )


if __name__ == "__main__":
    main()
