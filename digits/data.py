"""The prepared arrays: where they live and how they are checked on load.

prepare writes one .npz per split holding ``images`` (N, 784) float32 and
``labels`` (N, 10) float32 one-hot. train and evaluate load them through
``load_split``, which refuses a stale or hand-edited file instead of training
on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digits.artifacts import ArraySpec, load_npz
from digits.errors import PipelineError
from digits.mnist import NUM_CLASSES

PREPARED_DIR = Path("data/prepared")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, pixels) float32, scaled
    labels: np.ndarray  # (N, 10) float32, one-hot

    @property
    def classes(self) -> np.ndarray:
        """Integer labels (N,), int64 like tf.argmax, so comparisons never mix int32 and int64."""
        return np.argmax(self.labels, axis=1).astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)


def steps_per_epoch(size: int, batch_size: int) -> int:
    """Batches in one pass over ``size`` examples; the last one may be short."""
    return -(-size // batch_size)


def split_path(name: str, prepared_dir: Path = PREPARED_DIR) -> Path:
    return Path(prepared_dir) / f"{name}.npz"


def load_split(name: str, prepared_dir: Path = PREPARED_DIR) -> Split:
    """Load one prepared split, checking names, dtypes, shapes and values."""
    path = split_path(name, prepared_dir)
    arrays = load_npz(
        path, {"images": ArraySpec("float32", ("N", "pixels")), "labels": ArraySpec("float32", ("N", NUM_CLASSES))}
    )
    images, labels = arrays["images"], arrays["labels"]
    if len(labels) != len(images):
        raise PipelineError(f"{path}: {len(images)} images but {len(labels)} labels")
    if len(images) == 0:
        raise PipelineError(f"{path}: holds no examples")
    if not np.isfinite(images).all():
        raise PipelineError(f"{path}: images contain NaN or Inf")
    if not (np.isin(labels, (0.0, 1.0)).all() and (labels.sum(axis=1) == 1).all()):
        raise PipelineError(f"{path}: labels are not one-hot (each row must hold a single 1)")
    return Split(images=images, labels=labels)


def scale_pixels(images: np.ndarray, *, scale: tuple[float, float] | list[float]) -> np.ndarray:
    """uint8 pixels 0-255 -> float32 in [low, high], flattened to (N, pixels).

    Unscaled 0-255 input is what sent seed 002's loss to NaN; every consumer
    (training, evaluation, the exported model, predict) goes through here.
    """
    low, high = float(scale[0]), float(scale[1])
    flat = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    return (flat * np.float32((high - low) / 255.0) + np.float32(low)).astype(np.float32)
