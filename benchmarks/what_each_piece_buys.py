"""How much weight averaging, test-time augmentation and a committee each buy: validation errors, piece by piece.

For run directories of ``benchmarks/best_mlp.py --workdir`` (each holding
models/checkpoint.npz from its last epoch and data/prepared/), scores on
the validation split, never the test set:

- the trained weights of the last epoch (the checkpoint's ``model/``);
- their moving average (``average/``, what the run saved, with ``train.ema_decay``);
- the average, test-time augmented over ``--views`` (digits.tta);
- the committee of all the runs given, averaged and augmented likewise (digits.committee's rule, mean probability).

    python benchmarks/what_each_piece_buys.py runs/run0 runs/run1 runs/run2 --views '[{shift: [1, 0]}, {shift: [-1,
    0]}]'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from digits.runtime import tf  # noqa: F401 - first: quiet start-up, XLA flags

from digits.data import load_split
from digits.model import Mlp
from digits.params import TtaView
from digits.tta import tta_probabilities


def network(checkpoint: Path, prefix: str) -> Mlp:
    """The network held under ``prefix`` ("model/" or "average/") in a checkpoint."""
    arrays = np.load(checkpoint)
    weights = {name.removeprefix(prefix): arrays[name] for name in arrays.files if name.startswith(prefix)}
    if not weights:
        sys.exit(f"{checkpoint}: holds no {prefix} weights (was train.ema_decay on?)")
    sizes = [weights["W0"].shape[0]] + [weights[f"W{i}"].shape[1] for i in range(len(weights) // 2)]
    model = Mlp(sizes, activation="relu")
    model.set_arrays(weights)
    return model


def errors(probabilities: np.ndarray, classes: np.ndarray) -> int:
    return int(np.sum(probabilities.argmax(axis=1) != classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--views", default="[]", help="tta.views as YAML, e.g. '[{shift: [1, 0]}]'")
    parser.add_argument("--background", type=float, default=0.0)
    args = parser.parse_args()
    views = [TtaView(**view) for view in yaml.safe_load(args.views)]
    val = load_split("val", args.runs[0] / "data/prepared")

    augmented = []
    print(f"validation errors of {len(val)} images (accuracy):")
    for run in args.runs:
        checkpoint = run / "models/checkpoint.npz"
        trained, averaged = network(checkpoint, "model/"), network(checkpoint, "average/")
        augmented.append(tta_probabilities(averaged, val.images, views, background=args.background))
        figures = [
            errors(tta_probabilities(network, val.images, [], background=args.background), val.classes)
            for network in (trained, averaged)
        ]
        figures.append(errors(augmented[-1], val.classes))
        print(
            f"  {run}: trained weights {figures[0]}, averaged {figures[1]}, averaged + {len(views)} test-time views "
            f"{figures[2]}"
        )
    if len(args.runs) > 1:
        committee = errors(np.mean(augmented, axis=0), val.classes)
        print(
            f"  committee of the {len(args.runs)} runs (averaged + views): {committee} ({1 - committee / len(val):.4f})"
        )


if __name__ == "__main__":
    main()
