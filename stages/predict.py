"""Predict the digit in your own pictures with the exported SavedModel.

    python -m stages.predict IMAGE [IMAGE ...] [--json] [--model models/saved_model]

Each picture (PNG or JPEG, any size, colour or grey, dark-on-light or
light-on-dark) is preprocessed the way MNIST was made (digits.images) and
classified. A picture that cannot be used gets an error line; the others still
get their answers, and the exit code is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from digits.runtime import tf  # noqa: F401 - before any other TensorFlow import: quiet start-up, XLA flags

import numpy as np

from digits.classifier import load_classifier, reading
from digits.errors import PipelineError, run_main
from digits.images import load_grayscale, to_mnist
from digits.paths import SAVED_MODEL


def main() -> None:
    parser = argparse.ArgumentParser(description="Predict the digit in each image.")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    parser.add_argument("--model", type=Path, default=SAVED_MODEL)
    args = parser.parse_args()

    # Preprocess every image, keeping each one's error; results stay in argument order
    results, usable = [], []  # usable: (index into results, 28x28 image)
    for path in args.images:
        results.append({"image": str(path)})
        try:
            usable.append((len(results) - 1, to_mnist(load_grayscale(path), name=str(path))))
        except PipelineError as error:
            results[-1]["error"] = str(error)

    # Classify the usable ones in one batch
    if usable:
        classify = load_classifier(args.model)
        probabilities = classify(np.stack([image for _, image in usable]))
        for (index, _), row in zip(usable, probabilities):
            results[index].update(reading(row))

    # Report
    for result in results:
        if args.json:
            print(json.dumps(result))
        elif "error" in result:
            print(f"error: {result['error']}", file=sys.stderr)
        else:
            print(f"{result['image']}: {result['digit']} (probability {result['probability']:.3f})")
    if any("error" in result for result in results):
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
