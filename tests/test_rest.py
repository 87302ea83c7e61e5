"""digits/rest.py: TF Serving's request format read into images, and every bad request refused with what is wrong."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from conftest import RAW_MNIST
from digits.idx import load_raw_dataset
from digits.images import load_grayscale, to_mnist
from digits.rest import (
    MAX_INSTANCES,
    RequestError,
    model_metadata,
    model_status,
    parse_picture,
    parse_predict_request,
    picture_response,
)


@pytest.fixture(scope="module")
def test_digits() -> np.ndarray:
    return load_raw_dataset(RAW_MNIST)["test_images"][:5]


def body(instances: object, **extra: object) -> bytes:
    return json.dumps({"instances": instances, **extra}).encode()


def test_instances_become_the_images_sent(test_digits):
    assert np.array_equal(parse_predict_request(body(test_digits.tolist())), test_digits)
    named = parse_predict_request(body([{"images": image.tolist()} for image in test_digits]))  # named-input rows
    assert np.array_equal(named, test_digits)
    assert parse_predict_request(body(test_digits.tolist(), signature_name="serving_default")).dtype == np.uint8


def test_float_grey_levels_are_rounded_to_the_nearest_level(test_digits):
    floats = test_digits.astype(np.float64) + np.random.default_rng(0).uniform(-0.49, 0.49, test_digits.shape)
    floats = np.clip(floats, 0, 255)
    assert np.array_equal(parse_predict_request(body(floats.tolist())), test_digits)


def one_digit() -> list:
    return load_raw_dataset(RAW_MNIST)["test_images"][0].astype(int).tolist()


BAD_REQUESTS = {
    "not JSON": (b"images please", 400, "not JSON"),
    "not UTF-8": (b"\xff\xfe\x00", 400, "not JSON"),
    "a list, not an object": (b"[1, 2]", 400, "JSON object with an 'instances' list, not a list"),
    "no instances": (b'{"instance": []}', 400, "unknown key 'instance'"),
    "columnar inputs": (b'{"inputs": {"images": []}}', 400, "columnar 'inputs' format is not served"),
    "another signature": (None, 400, "no signature 'classify'"),
    "empty instances": (b'{"instances": []}', 400, "non-empty list"),
    "instances not a list": (b'{"instances": 7}', 400, "non-empty list"),
    "flat 784 values": (None, 400, "instance 0: a flat list of 784 values"),
    "wrong shape": (None, 400, "instance 1: shape [28, 27]"),
    "ragged rows": (None, 400, "instance 0: rows of different lengths"),
    "text": (None, 400, "instance 0: holds text"),
    "booleans": (None, 400, "not true or false"),
    "nulls": (None, 400, "instance 0: holds values that are not numbers"),
    "NaN": (b'{"instances": [NaN]}', 400, "NaN is not a grey level"),
    "Infinity": (b'{"instances": [[-Infinity]]}', 400, "-Infinity is not a grey level"),
    "above 255": (None, 400, "instance 1: grey levels run from 0 to 256"),
    "below 0": (None, 400, "instance 0: grey levels run from -1 to 255"),
    "scaled to 0-1": (None, 400, "look scaled to 0-1 (largest 1); send MNIST's 0-255"),
    "a named row with another key": (None, 400, "instance 0: an object instance has one key, 'images'"),
    "too many instances": (None, 413, f"{MAX_INSTANCES + 1} instances in one request; at most {MAX_INSTANCES}"),
}


def bad_body(case: str) -> bytes:
    given = BAD_REQUESTS[case][0]
    if given is not None:
        return given
    digit = one_digit()
    above, below, ragged = [row[:] for row in digit], [row[:] for row in digit], [row[:] for row in digit]
    above[5][5], below[0][0] = 256, -1
    below[20][20] = 255
    ragged[3] = ragged[3][:-1]
    return {
        "another signature": lambda: body([digit], signature_name="classify"),
        "flat 784 values": lambda: body([np.ravel(digit).tolist()]),
        "wrong shape": lambda: body([digit, [row[:27] for row in digit]]),
        "ragged rows": lambda: body([ragged]),
        "text": lambda: body([[["0"] * 28] * 28]),
        "booleans": lambda: body([[[True] * 28] * 28]),
        "nulls": lambda: body([[[None] * 28] * 28]),
        "above 255": lambda: body([digit, above]),
        "below 0": lambda: body([below]),
        "scaled to 0-1": lambda: body([(np.array(digit) / 255).tolist()]),
        "a named row with another key": lambda: body([{"images": digit, "pixels": digit}]),
        "too many instances": lambda: body([digit] * (MAX_INSTANCES + 1)),
    }[case]()


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_every_bad_request_is_refused_naming_what_is_wrong(case):
    _, status, message = BAD_REQUESTS[case]
    with pytest.raises(RequestError) as refused:
        parse_predict_request(bad_body(case))
    assert refused.value.status == status
    assert message in refused.value.message, refused.value.message


# ------------------------------------------------------------ pictures


def png_bytes(image: Image.Image, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def test_a_picture_is_read_as_stages_predict_reads_the_same_file(test_digits, tmp_path):
    paper = Image.fromarray(255 - np.kron(test_digits[0], np.ones((6, 6), np.uint8)))  # dark ink on white, 168 x 168
    paper.save(tmp_path / "digit.png")
    image = parse_picture(png_bytes(paper), "image/png")
    assert np.array_equal(image, to_mnist(load_grayscale(tmp_path / "digit.png")))
    assert parse_picture(png_bytes(paper.convert("RGB"), "JPEG"), "image/jpeg; charset=binary").shape == (28, 28)


@pytest.mark.parametrize(
    ("picture", "content_type", "status", "message"),
    [
        (b"GIF89a not really", "image/png", 400, "the picture: not a readable image"),
        (b"", "image/png", 400, "the picture: not a readable image"),
        (png_bytes(Image.new("L", (64, 64), 250)), "image/png", 400, "the picture: blank image"),
        (png_bytes(Image.new("1", (5000, 4000))), "image/png", 413, "too large (5000 x 4000 pixels, at most 16 mega"),
        (png_bytes(Image.new("L", (8, 8))), "application/json", 415, "send the picture's bytes as image/png"),
        (png_bytes(Image.new("L", (8, 8))), "", 415, "Content-Type '(none)'"),
    ],
    ids=["not a picture", "empty", "blank", "decompression bomb", "wrong type", "no type"],
)
def test_a_bad_picture_is_refused_naming_what_is_wrong(picture, content_type, status, message):
    with pytest.raises(RequestError) as refused:
        parse_picture(picture, content_type)
    assert (refused.value.status, message in refused.value.message) == (status, True), refused.value.message


def test_the_picture_answer_holds_what_stages_predict_says_and_more(test_digits):
    probabilities = np.array([0.01, 0.02, 0.9, 0.07, 0, 0, 0, 0, 0, 0], np.float32)
    answer = picture_response(test_digits[1], probabilities)
    assert (answer["digit"], answer["probability"]) == (2, 0.9)
    assert len(answer["probabilities"]) == 10 and np.array_equal(answer["preprocessed"], test_digits[1])
    json.dumps(answer)  # plain JSON types throughout


def test_status_and_metadata_have_tf_servings_shape():
    assert model_status()["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = model_metadata({"weights_md5": "abc", "test_accuracy": 0.98})
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert metadata["model_spec"]["name"] == "digits" and metadata["metadata"]["pipeline"]["weights_md5"] == "abc"
