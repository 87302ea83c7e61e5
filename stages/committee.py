"""Stage 5: score the committee, the pipeline's network and the members of ``committee.members``, on the test set.

Each member's class probabilities (test-time augmented over ``tta.views``,
as evaluate does) are averaged; the committee predicts the class of
highest mean probability (digits.committee). metrics/committee.json holds
the committee's accuracy, loss and errors, and each member's beside them, so
`dvc metrics show` lines them up. With no members the committee is the
pipeline's network alone, and its figures are evaluate's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from digits.runtime import tf  # noqa: F401 - before any other TensorFlow import: quiet start-up, XLA flags

import numpy as np

from digits.artifacts import check_writable, write_json
from digits.committee import member_root
from digits.data import load_split
from digits.errors import PipelineError, run_main
from digits.metrics import classification_metrics, log_probabilities
from digits.model import Mlp, load_weights
from digits.params import TtaView, load_params
from digits.paths import WEIGHTS
from digits.tta import tta_probabilities

METRICS = Path("metrics/committee.json")


def committee_probabilities(
    models: Sequence[Mlp], images: np.ndarray, views: Sequence[TtaView], *, background: float
) -> np.ndarray:
    """(members, N, 10): each member's class probabilities, test-time augmented over ``views`` if any; their mean is the
    committee's.
    """
    return np.stack([tta_probabilities(model, images, views, background=background) for model in models])


def summary(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Accuracy, loss and errors of a prediction given as class probabilities."""
    metrics = classification_metrics(labels, log_probabilities(probabilities))
    return {key: metrics[key] for key in ("accuracy", "loss", "errors")}


def main() -> None:
    params = load_params()
    members = [0, *params.committee.members]

    # The members' weights and the test data
    check_writable(METRICS)
    paths = {member: member_root(member) / WEIGHTS for member in members}
    models = [load_weights(path) for path in paths.values()]
    test = load_split("test")
    for member, model in zip(members, models):
        if model.layer_sizes[0] != test.images.shape[1]:
            raise PipelineError(
                f"data/prepared/test.npz has {test.images.shape[1]} pixels per image but {paths[member]} expects "
                f"{model.layer_sizes[0]}"
            )

    # Score every member, then their average
    probabilities = committee_probabilities(models, test.images, params.tta.views, background=params.data.scale[0])
    metrics = {
        **summary(test.classes, probabilities.mean(axis=0)),
        "size": len(members),
        "tta_views": len(params.tta.views),
        "members": {
            str(member): summary(test.classes, member_probabilities)
            for member, member_probabilities in zip(members, probabilities)
        },
    }

    write_json(METRICS, metrics)
    each = ", ".join(f"{member}: {scores['errors']}" for member, scores in metrics["members"].items())
    print(
        f"committee of {len(members)}: accuracy {metrics['accuracy']:.4f}, {metrics['errors']} errors of {len(test)} "
        f"(each member's errors: {each})"
    )


if __name__ == "__main__":
    run_main(main)
