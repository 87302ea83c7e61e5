"""Which test-time augmentation views help a trained network: scored on the validation split, never the test set.

Prints the validation accuracy and errors of the network alone and averaged
over each candidate set of views (digits.tta), with the seconds each took,
so ``tta.views`` is chosen without looking at the test set. The last line is
``best_views=<YAML flow list>``, ready for ``dvc exp run -S 'tta.views=...'``.

    python benchmarks/tta_views.py                                  # models/weights.npz on data/prepared/val.npz
    python benchmarks/tta_views.py --run runs/run0   # a run directory of best_mlp.py --workdir
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from digits.runtime import tf

from digits.data import load_split
from digits.model import load_weights
from digits.params import TtaView
from digits.tta import tta_logits

SHIFTS = [{"shift": [1, 0]}, {"shift": [-1, 0]}, {"shift": [0, 1]}, {"shift": [0, -1]}]
DIAGONALS = [{"shift": [1, 1]}, {"shift": [-1, -1]}, {"shift": [1, -1]}, {"shift": [-1, 1]}]
CANDIDATES = {
    "shifts 1 px (4)": SHIFTS,
    "shifts 1 px, with diagonals (8)": SHIFTS + DIAGONALS,
    "rotations +-6 deg (2)": [{"rotation": 6}, {"rotation": -6}],
    "scales 0.93, 1.07 (2)": [{"scale": 0.93}, {"scale": 1.07}],
    "shifts and rotations (6)": [*SHIFTS, {"rotation": 6}, {"rotation": -6}],
    "shifts, rotations and scales (8)": [*SHIFTS, {"rotation": 6}, {"rotation": -6}, {"scale": 0.93}, {"scale": 1.07}],
    "half-pixel shifts (4)": [{"shift": [0.5, 0]}, {"shift": [-0.5, 0]}, {"shift": [0, 0.5]}, {"shift": [0, -0.5]}],
    "half-pixel shifts, rotations +-4 deg, scales 0.95, 1.05 (8)": [
        {"shift": [0.5, 0]},
        {"shift": [-0.5, 0]},
        {"shift": [0, 0.5]},
        {"shift": [0, -0.5]},
        {"rotation": 4},
        {"rotation": -4},
        {"scale": 0.95},
        {"scale": 1.05},
    ],
}


def flow(views: list[dict]) -> str:
    """The views as a YAML flow list, e.g. [{shift: [1, 0]}, {rotation: 6}]."""

    def item(view: dict) -> str:
        return "{" + ", ".join(f"{key}: {value}" for key, value in view.items()) + "}"

    return "[" + ", ".join(item(view) for view in views) + "]"


def main() -> None:
    tf.get_logger().setLevel(
        "ERROR"
    )  # each view set compiles its own function: TensorFlow's retracing warning is expected
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, default=Path("."), help="directory with models/weights.npz and data/prepared/val.npz"
    )
    parser.add_argument("--background", type=float, default=0.0, help="data.scale's low end: what views fill in")
    args = parser.parse_args()
    model = load_weights(args.run / "models/weights.npz")
    val = load_split("val", args.run / "data/prepared")

    results = {}
    for name, views in {"none": [], **CANDIDATES}.items():
        started = time.perf_counter()
        logits = tta_logits(model, val.images, [TtaView(**view) for view in views], background=args.background)
        errors = int(np.sum(logits.argmax(axis=1) != val.classes))
        results[name] = errors
        print(
            f"{name:60s} val accuracy {1 - errors / len(val):.4f}  {errors:3d} errors  "
            f"{time.perf_counter() - started:5.1f} s",
            flush=True,
        )
    best = min(
        results, key=lambda name: (results[name], len(CANDIDATES.get(name, [])))
    )  # the fewest errors, then the fewest views
    print(f"best_views={flow(CANDIDATES.get(best, []))}")


if __name__ == "__main__":
    main()
