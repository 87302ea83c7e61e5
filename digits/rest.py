"""TensorFlow Serving's REST API for the digit classifier: reading requests and writing answers.

Pure functions of bytes and arrays (digits.server does the sockets), so
every bad request is tested without a server. The formats are TF Serving's
(https://www.tensorflow.org/tfx/serving/api_rest):

    POST /v1/models/digits:predict   {"instances": [<28 rows of 28 grey levels>, ...]}
                                     -> {"predictions": [[10 probabilities], ...]}
    GET  /v1/models/digits           -> {"model_version_status": [...]}
    GET  /v1/models/digits/metadata  -> {"model_spec": ..., "metadata": {"signature_def": ...}}

and errors are ``{"error": "<what is wrong>"}`` with a 4xx status. An
instance may also be ``{"images": <28 rows>}``, TF Serving's row format
for a named input. Grey levels are MNIST's: 0-255, light digit on dark,
integers or floats (rounded to the nearest level, as the SavedModel takes
uint8). The picture endpoint is this project's own: a PNG or JPEG in, what
``python -m stages.predict --json`` prints out, plus the ten probabilities
and the 28 x 28 image the network was given.
"""

from __future__ import annotations

import io
import json

import numpy as np

from digits.classifier import reading
from digits.images import ImageError, ImageTooLarge, decode_grayscale, to_mnist
from digits.mnist import IMAGE_SIDE, NUM_CLASSES

MODEL_NAME = "digits"
MODEL_VERSION = "1"  # TF Serving numbers versions by directory; this server holds one model
MAX_INSTANCES = 1000  # per predict request
MAX_BODY_BYTES = 8 * 1024 * 1024  # 1,000 instances as JSON floats fit (~5 MB); so does a phone's JPEG
MAX_PICTURE_PIXELS = 16_000_000  # 4,000 x 4,000; decoding one takes ~0.5 GB at most
PICTURE_TYPES = ("image/png", "image/jpeg")


class RequestError(Exception):
    """A request the server answers with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def parse_predict_request(body: bytes) -> np.ndarray:
    """A predict request's instances as uint8 (N, 28, 28), or a RequestError naming the first thing wrong."""
    request = parse_json(body)
    if not isinstance(request, dict):
        raise RequestError(400, f"the body must be a JSON object with an 'instances' list, not a {json_type(request)}")
    if "inputs" in request and "instances" not in request:
        raise RequestError(400, "the columnar 'inputs' format is not served; send the row format: {'instances': [...]}")
    unknown = sorted(set(request) - {"instances", "signature_name"})
    if unknown:
        raise RequestError(400, f"unknown key {unknown[0]!r}; a predict request has 'instances' (and 'signature_name')")
    if request.get("signature_name", "serving_default") != "serving_default":
        raise RequestError(400, f"no signature {request['signature_name']!r}; the model has 'serving_default'")
    instances = request.get("instances")
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, "'instances' must be a non-empty list of 28 x 28 images")
    if len(instances) > MAX_INSTANCES:
        raise RequestError(413, f"{len(instances)} instances in one request; at most {MAX_INSTANCES} (split the batch)")
    instances = [unwrap_instance(instance, index) for index, instance in enumerate(instances)]
    if b"true" in body or b"false" in body:  # the only JSON literals that numpy would take as numbers (1 and 0)
        raise RequestError(400, "grey levels must be numbers 0-255, not true or false")
    return as_grey_levels(instances)


def parse_json(body: bytes) -> object:
    """The body as JSON; NaN and Infinity (which Python's parser accepts, JSON does not) are refused."""

    def refuse_constant(name: str) -> None:
        raise RequestError(400, f"{name} is not a grey level (JSON has no {name}); send numbers 0-255")

    try:
        return json.loads(body, parse_constant=refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, f"the body is not JSON ({error})") from None


def unwrap_instance(instance: object, index: int) -> object:
    """TF Serving's named-input row, ``{"images": x}``, as ``x``; anything else as it is."""
    if isinstance(instance, dict):
        if set(instance) != {"images"}:
            raise RequestError(
                400,
                f"instance {index}: an object instance has one key, 'images' (the input), not {sorted(instance)}",
            )
        return instance["images"]
    return instance


def as_grey_levels(instances: list) -> np.ndarray:
    """Nested lists -> uint8 (N, 28, 28), checking the shape and the range of every instance."""
    try:
        array = np.array(instances)
    except ValueError:  # ragged: one instance (or row) has another length; find which
        array = None
    if array is None or array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or array.dtype.kind not in "iuf":
        for index, instance in enumerate(instances):
            check_instance(instance, index)
        raise RequestError(400, "the instances are not all 28 x 28 grey levels")  # unreachable: one failed above
    if array.dtype.kind == "f" and array.max() <= 1.0 and (array != np.round(array)).any():
        raise RequestError(
            400, f"the grey levels look scaled to 0-1 (largest {array.max():g}); send MNIST's 0-255 (multiply by 255)"
        )
    low, high = array.min(axis=(1, 2)), array.max(axis=(1, 2))
    bad = np.flatnonzero((low < 0) | (high > 255))
    if bad.size:
        index = int(bad[0])
        raise RequestError(
            400, f"instance {index}: grey levels run from {low[index]:g} to {high[index]:g}; they must be within 0-255"
        )
    return np.rint(array).astype(np.uint8)


def check_instance(instance: object, index: int) -> None:
    """Raise the RequestError that says how one instance is not 28 rows of 28 numbers."""
    try:
        array = np.array(instance)
    except ValueError:
        raise RequestError(
            400, f"instance {index}: rows of different lengths; send 28 rows of 28 grey levels"
        ) from None
    if array.shape == (IMAGE_SIDE * IMAGE_SIDE,):
        raise RequestError(
            400, f"instance {index}: a flat list of {array.size} values; send 28 rows of 28 (reshape(28, 28))"
        )
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise RequestError(
            400, f"instance {index}: shape {list(array.shape)}; each instance is 28 rows of 28 grey levels"
        )
    if array.dtype.kind not in "iuf":
        held = "text" if array.dtype.kind == "U" else "values that are not numbers"
        raise RequestError(400, f"instance {index}: holds {held}; grey levels are numbers 0-255")


def predict_response(probabilities: np.ndarray) -> dict:
    return {"predictions": probabilities.tolist()}


def parse_picture(body: bytes, content_type: str) -> np.ndarray:
    """An uploaded PNG or JPEG as the uint8 (28, 28) MNIST-style image the network receives (digits.images)."""
    if content_type.split(";")[0].strip().lower() not in PICTURE_TYPES:
        raise RequestError(
            415, f"Content-Type {content_type or '(none)'!r}; send the picture's bytes as image/png or image/jpeg"
        )
    try:
        gray = decode_grayscale(io.BytesIO(body), name="the picture", max_pixels=MAX_PICTURE_PIXELS)
        return to_mnist(gray, name="the picture")
    except ImageTooLarge as error:
        raise RequestError(413, str(error)) from None
    except ImageError as error:
        raise RequestError(400, str(error)) from None


def picture_response(image: np.ndarray, probabilities: np.ndarray) -> dict:
    """What ``stages.predict --json`` says of a picture, with every probability and the image the network saw."""
    return {
        **reading(probabilities),
        "probabilities": [round(float(p), 6) for p in probabilities],
        "preprocessed": image.tolist(),
    }


def model_status() -> dict:
    """TF Serving's answer to ``GET /v1/models/<name>``: one version, loaded."""
    return {
        "model_version_status": [
            {"version": MODEL_VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def model_metadata(identity: dict) -> dict:
    """TF Serving's ``GET /v1/models/<name>/metadata``, the signature written out, plus what the pipeline recorded."""

    def tensor(name: str, dtype: str, dims: list[int]) -> dict:
        return {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in dims]}, "name": name}

    signature = {
        "inputs": {"images": tensor("serving_default_images:0", "DT_UINT8", [-1, IMAGE_SIDE, IMAGE_SIDE])},
        "outputs": {"probabilities": tensor("StatefulPartitionedCall:0", "DT_FLOAT", [-1, NUM_CLASSES])},
        "method_name": "tensorflow/serving/predict",
    }
    return {
        "model_spec": {"name": MODEL_NAME, "signature_name": "", "version": MODEL_VERSION},
        "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}, "pipeline": identity},
    }


def json_type(value: object) -> str:
    """A Python value's JSON type name, for error messages."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)
