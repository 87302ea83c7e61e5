"""Stage 1: raw MNIST IDX files -> scaled, one-hot, split arrays in data/prepared/.

Reads the four IDX files named in ``data.raw_dir`` (checksums verified),
scales pixels to ``data.scale``, one-hots the labels, and splits a seeded,
stratified validation set of ``data.val_size`` images out of the training
set. The test set is only converted, never shuffled or sampled from
(``data.test_size`` takes its first N images, for quick runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digits.artifacts import save_npz
from digits.data import PREPARED_DIR, scale_pixels, split_path
from digits.errors import PipelineError, run_main
from digits.idx import load_raw_dataset
from digits.mnist import NUM_CLASSES
from digits.params import load_params


def one_hot(labels: np.ndarray, *, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot (N, num_classes)."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def stratified_split(labels: np.ndarray, *, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), disjoint and together covering every example.

    Each class contributes to validation in proportion to its frequency
    (largest-remainder rounding, so the total is exactly ``val_size``); which
    examples go is drawn from ``seed``. Both index arrays come back sorted, so
    the files do not depend on the order of the draw.
    """
    if not 0 < val_size < len(labels):
        raise PipelineError(
            f"data.val_size = {val_size}: must be between 1 and {len(labels) - 1} (the training set holds "
            f"{len(labels)} images)"
        )
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * val_size / len(labels)
    quota = np.floor(exact).astype(int)
    shortfall = val_size - quota.sum()
    quota[np.argsort(-(exact - quota), kind="stable")[:shortfall]] += 1
    val_parts = [rng.permutation(np.flatnonzero(labels == cls))[:n] for cls, n in zip(classes, quota)]
    val_index = np.sort(np.concatenate(val_parts))
    train_index = np.setdiff1d(np.arange(len(labels)), val_index)
    return train_index, val_index


def subsample(index: np.ndarray, *, size: int | None, seed: int) -> np.ndarray:
    """At most ``size`` of ``index``, drawn with ``seed`` and kept in order (None = all)."""
    if size is None or size >= len(index):
        return index
    return np.sort(np.random.default_rng([seed, 1]).choice(index, size=size, replace=False))


def main() -> None:
    params = load_params().data

    # Read and verify the raw IDX files
    raw = load_raw_dataset(Path(params.raw_dir))

    # Split validation out of the training set
    train_index, val_index = stratified_split(raw["train_labels"], val_size=params.val_size, seed=params.split_seed)
    train_index = subsample(train_index, size=params.train_size, seed=params.split_seed)
    test_count = len(raw["test_labels"]) if params.test_size is None else min(params.test_size, len(raw["test_labels"]))

    # Scale, one-hot and write each split
    splits = {
        "train": (raw["train_images"][train_index], raw["train_labels"][train_index]),
        "val": (raw["train_images"][val_index], raw["train_labels"][val_index]),
        "test": (raw["test_images"][:test_count], raw["test_labels"][:test_count]),
    }
    for name, (images, labels) in splits.items():
        save_npz(
            split_path(name, PREPARED_DIR),
            {"images": scale_pixels(images, scale=params.scale), "labels": one_hot(labels)},
        )
        print(f"prepare: {name}: {len(labels)} images -> {split_path(name, PREPARED_DIR)}")


if __name__ == "__main__":
    run_main(main)
