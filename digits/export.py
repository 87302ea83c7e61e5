"""Exporting the trained network as a self-contained TensorFlow SavedModel.

The SavedModel wraps the same explicit Variables in a tf.Module whose
``serving_default`` signature takes a batch of 28x28 uint8 images (0-255,
light digit on dark, as MNIST) and returns class probabilities. The pixel
scaling is baked in, so a user needs nothing but ``tf.saved_model.load``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tensorflow.core.protobuf import fingerprint_pb2

from digits.runtime import tf
from digits.artifacts import atomic_path
from digits.model import Mlp


class ServingModule(tf.Module):
    def __init__(self, model: Mlp, *, scale: list[float] | tuple[float, float]) -> None:
        super().__init__(name="digits")
        self.model = model
        self.scale_low = tf.constant(float(scale[0]))
        self.scale_step = tf.constant((float(scale[1]) - float(scale[0])) / 255.0)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="images")])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        flat = tf.reshape(tf.cast(images, tf.float32), [-1, 28 * 28])
        logits = self.model(flat * self.scale_step + self.scale_low)
        return {"probabilities": tf.nn.softmax(logits)}


def export_saved_model(model: Mlp, path: Path | str, *, scale: list[float] | tuple[float, float]) -> None:
    """Write the SavedModel directory atomically (temporary directory, then rename)."""
    module = ServingModule(model, scale=scale)
    with atomic_path(path) as temporary:
        tf.saved_model.save(module, str(temporary), signatures={"serving_default": module.serve})
        make_fingerprint_reproducible(temporary / "fingerprint.pb")


def make_fingerprint_reproducible(path: Path) -> None:
    """Replace the random ``uuid`` TensorFlow writes into fingerprint.pb.

    Everything else in a SavedModel is a function of the weights and code; the
    uuid alone would change dvc.lock on every run. It becomes a hash of the
    fingerprint's own content hashes, so it still differs between models.
    """
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(path.read_bytes())
    fingerprint.uuid = ""
    fingerprint.uuid = hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).hexdigest()[:32]
    path.write_bytes(fingerprint.SerializeToString(deterministic=True))
