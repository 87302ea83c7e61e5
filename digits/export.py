"""Exporting the trained network as a self-contained TensorFlow SavedModel.

The SavedModel wraps the same explicit Variables in a tf.Module whose
``serving_default`` signature takes a batch of 28x28 uint8 images (0-255,
light digit on dark, as MNIST) and returns class probabilities. The pixel
scaling is baked in, so a user needs nothing but ``tf.saved_model.load``.
With test-time augmentation views (``tta.export``) the probabilities are
the average over the image and those views (digits.tta), at 1 + len(views)
times the cost; without, the serving function is the plain forward pass.
"""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

from digits.runtime import tf

from tensorflow.core.protobuf import fingerprint_pb2
from tensorflow.python.framework import ops

from digits.artifacts import atomic_path, write_error
from digits.mnist import IMAGE_PIXELS, IMAGE_SIDE
from digits.model import Mlp
from digits.params import TtaView
from digits.reductions import softmax
from digits.tta import averaged_probabilities

# Where the export's names start: far above what a training run reaches (about 25 a epoch: a 20-epoch run
# exports near 1,200, a 200-epoch one near 5,500), and quick to count up to (0.2 s).
EXPORT_UID = 1 << 21


class ServingModule(tf.Module):
    def __init__(
        self, model: Mlp, *, scale: list[float] | tuple[float, float], views: tuple[TtaView, ...] = ()
    ) -> None:
        super().__init__(name="digits")
        self.model, self.views, self.background = model, tuple(views), float(scale[0])
        self.scale_low = tf.constant(float(scale[0]))
        self.scale_step = tf.constant((float(scale[1]) - float(scale[0])) / 255.0)

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIDE, IMAGE_SIDE], tf.uint8, name="images")])
    def serve(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        flat = tf.reshape(tf.cast(images, tf.float32), [-1, IMAGE_PIXELS])
        scaled = flat * self.scale_step + self.scale_low
        if self.views:
            return {"probabilities": averaged_probabilities(self.model, scaled, self.views, background=self.background)}
        return {"probabilities": softmax(self.model(scaled))}


def export_saved_model(
    model: Mlp, path: Path | str, *, scale: list[float] | tuple[float, float], views: tuple[TtaView, ...] = ()
) -> None:
    """Write the SavedModel directory atomically (temporary directory, then rename); ``views``: test-time augmentation
    baked in.
    """
    start_names_at(EXPORT_UID)
    module = ServingModule(model, scale=scale, views=views)
    with atomic_path(path) as temporary:
        try:
            tf.saved_model.save(module, str(temporary), signatures={"serving_default": module.serve})
        except (
            tf.errors.OpError
        ) as error:  # TensorFlow writes these files itself: a full disk is a ResourceExhaustedError from SaveV2
            raise write_error(path, as_os_error(error.message)) from None
        make_fingerprint_reproducible(temporary / "fingerprint.pb")


def start_names_at(uid: int) -> None:
    """Advance TensorFlow's process-wide name counter to ``uid`` (or the next multiple of it).

    TensorFlow numbers what it traces and captures with one counter that
    every eager op and function call advances (``__inference_serve_774``,
    ``CustomGradient-37``, a captured tensor's ``_user_specified_name``), so
    a SavedModel's bytes depended on what the process did before exporting:
    a resumed run, which reads a checkpoint first, exported other bytes than
    an uninterrupted one. There is no reset; starting the export from a fixed
    value gives the same names, and the same bytes, after any history.
    """
    current = ops.uid()
    target = uid if current < uid else -(-current // uid) * uid
    for _ in range(target - current - 1):
        ops.uid()


def as_os_error(message: str) -> OSError:
    """TensorFlow's message for a failed write, as the OSError Python would have raised."""
    first_line = message.splitlines()[0] if message else "write failed"
    for code, words in (
        (errno.ENOSPC, "No space left"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
    ):
        if words in message:
            return OSError(code, first_line)
    return OSError(0, first_line)


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
