"""Stage 3: score the trained weights on the untouched test set.

The prediction is the network's softmax, or with ``tta.views`` its average
over the image and those fixed distortions (digits.tta). Writes
metrics/evaluate.json (accuracy, loss, errors, per-class accuracy,
precision and recall of that prediction; with views, the plain network's
accuracy, loss and errors beside them under ``plain``), plots/confusion.csv (actual vs predicted, one row per
test image, for DVC's confusion template), plots/confusion_errors.csv (the
same rows for the misclassified images alone: with ~1,000 correct per digit
on the diagonal, the errors are invisible in the full matrix's colour scale)
and plots/misclassified.png.
"""

from __future__ import annotations

from pathlib import Path

from digits.artifacts import check_writable, write_csv, write_json
from digits.data import load_split
from digits.errors import PipelineError, run_main
from digits.metrics import classification_metrics, softmax
from digits.model import load_weights, predict_logits
from digits.params import load_params
from digits.paths import WEIGHTS
from digits.plots import draw_misclassified_grid
from digits.tta import tta_logits

METRICS = Path("metrics/evaluate.json")
CONFUSION = Path("plots/confusion.csv")
CONFUSION_ERRORS = Path("plots/confusion_errors.csv")
MISCLASSIFIED = Path("plots/misclassified.png")


def main() -> None:
    all_params = load_params()
    params, views = all_params.evaluate, all_params.tta.views

    # Model and test data (and outputs that could be written)
    check_writable(METRICS, CONFUSION, CONFUSION_ERRORS, MISCLASSIFIED)
    model = load_weights(WEIGHTS)
    test = load_split("test")
    if test.images.shape[1] != model.layer_sizes[0]:
        raise PipelineError(
            f"data/prepared/test.npz has {test.images.shape[1]} pixels per image but {WEIGHTS} expects "
            f"{model.layer_sizes[0]}"
        )

    # Score: the plain network, and its test-time augmented prediction if asked for
    logits = predict_logits(model, test.images)
    metrics = classification_metrics(test.classes, logits)
    if views:
        plain = {key: metrics[key] for key in ("accuracy", "loss", "errors")}
        logits = tta_logits(model, test.images, views, background=all_params.data.scale[0])
        metrics = {**classification_metrics(test.classes, logits), "tta_views": len(views), "plain": plain}
    predictions = logits.argmax(axis=1)

    # Write metrics and plots
    write_json(METRICS, metrics)
    pairs = list(zip(test.classes.tolist(), predictions.tolist()))
    write_csv(CONFUSION, ("actual", "predicted"), pairs)
    write_csv(
        CONFUSION_ERRORS,
        ("actual", "predicted"),
        [(actual, predicted) for actual, predicted in pairs if actual != predicted],
    )
    shown = draw_misclassified_grid(
        MISCLASSIFIED,
        images=test.images,
        labels=test.classes,
        probabilities=softmax(logits),
        count=params.misclassified_shown,
    )
    with_views = (
        f" (test-time augmented over {len(views)} views; plain network: {metrics['plain']['accuracy']:.4f})"
        if views
        else ""
    )
    print(
        f"evaluate: accuracy {metrics['accuracy']:.4f}{with_views}, loss {metrics['loss']:.4f}, {metrics['errors']} "
        "errors "
        f"of {metrics['examples']}; {shown} shown in {MISCLASSIFIED}"
    )


if __name__ == "__main__":
    run_main(main)
