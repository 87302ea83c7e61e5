"""digits/server.py over real sockets: the page's files and nothing else, TF Serving's REST API on a real model, and
every bad request a 4xx JSON error after which the server (and the same connection) answers the next request.

The server runs in this process on a free port, serving a SavedModel fitted on the prepared slice
(conftest.slice_saved_model); tests/test_serve.py starts the command itself.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import threading

import numpy as np
import pytest
from PIL import Image
from test_rest import BAD_REQUESTS, bad_body

from conftest import RAW_MNIST
from digits.classifier import load_classifier
from digits.idx import load_raw_dataset
from digits.images import to_mnist
from digits.rest import MAX_BODY_BYTES
from digits.server import PAGE_DIR, DigitServer

IDENTITY = {"weights_md5": "0123456789abcdef0123456789abcdef", "test_accuracy": 0.9, "saved_model": "a model"}


@pytest.fixture(scope="module")
def classify(slice_saved_model):
    return load_classifier(slice_saved_model)


@pytest.fixture(scope="module")
def server(classify):
    running = DigitServer(("127.0.0.1", 0), classify=classify, identity=IDENTITY)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


@pytest.fixture(scope="module")
def test_set() -> tuple[np.ndarray, np.ndarray]:
    data = load_raw_dataset(RAW_MNIST)
    return data["test_images"][-200:], data["test_labels"][-200:]  # outside the slice the model was fitted on


def connect(server: DigitServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(*server.server_address[:2], timeout=30)


def request(connection, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, JSON or bytes) of one request on ``connection``."""
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    content = response.read()
    is_json = response.getheader("Content-Type") == "application/json"
    return response.status, response, json.loads(content) if is_json else content


def predict(connection, images: np.ndarray):
    return request(connection, "POST", "/v1/models/digits:predict", json.dumps({"instances": images.tolist()}).encode())


# ------------------------------------------------------------ the REST API


def test_predict_answers_as_the_saved_model_does(server, classify, test_set):
    images, labels = test_set
    status, _, answer = predict(connect(server), images)
    assert status == 200
    predictions = np.array(answer["predictions"])
    assert predictions.shape == (200, 10)
    np.testing.assert_allclose(predictions, classify(images), rtol=0, atol=1e-6)
    assert (predictions.argmax(axis=1) == labels).mean() >= 0.7  # a 3-epoch net on 2,000 images: ~78 %


def test_status_and_metadata_answer_as_tf_serving_does(server):
    connection = connect(server)
    status, _, answer = request(connection, "GET", "/v1/models/digits")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, _, metadata = request(connection, "GET", "/v1/models/digits/metadata")
    assert status == 200 and metadata["metadata"]["pipeline"] == IDENTITY


def test_eight_concurrent_clients_get_their_own_answers_and_share_model_calls(server, classify, test_set):
    images, _ = test_set
    expected = classify(images).argmax(axis=1)
    calls_before, requests_before = server.batcher.calls, server.batcher.requests
    wrong: list[int] = []

    def client(offset: int) -> None:
        connection = connect(server)
        for index in range(offset, len(images), 8):
            _, _, answer = predict(connection, images[index : index + 1])
            if int(np.argmax(answer["predictions"][0])) != expected[index]:
                wrong.append(index)

    threads = [threading.Thread(target=client, args=(offset,)) for offset in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert wrong == []
    calls, requests = server.batcher.calls - calls_before, server.batcher.requests - requests_before
    assert requests == 200 and calls <= requests


# ------------------------------------------------------------ bad requests


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_predict_request_is_a_4xx_naming_it_and_the_connection_serves_on(server, case, test_set):
    connection = connect(server)
    status, response, answer = request(connection, "POST", "/v1/models/digits:predict", bad_body(case))
    _, expected_status, message = BAD_REQUESTS[case]
    assert status == expected_status and message in answer["error"], answer
    assert response.getheader("Content-Type") == "application/json"
    status, _, _ = predict(connection, test_set[0][:1])  # the same keep-alive connection
    assert status == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(server, test_set):
    with socket.create_connection(server.server_address[:2], timeout=30) as raw:
        raw.sendall(
            b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )  # and no body at all: the answer must not wait for it
        answer = raw.makefile("rb").read()  # the server closes the connection after answering
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head
    assert f"at most {MAX_BODY_BYTES:,}" in json.loads(content)["error"]
    assert predict(connect(server), test_set[0][:1])[0] == 200


@pytest.mark.parametrize(
    ("raw_request", "status", "message"),
    [
        (b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n\r\n", 411, "needs a Content-Length"),
        (
            b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            411,
            "chunked bodies are not read",
        ),
        (b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "Bad request version"),
        (b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "Unsupported method"),
        (b'POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"ins', 400, "ended"),
    ],
    ids=["no length", "chunked", "garbage", "unknown method", "short body"],
)
def test_malformed_http_is_a_json_error(server, raw_request, status, message, test_set):
    with socket.create_connection(server.server_address[:2], timeout=30) as raw:
        raw.sendall(raw_request)
        if raw_request.endswith(b'{"ins'):
            raw.shutdown(socket.SHUT_WR)  # the client gives up mid-body
        head, _, content = raw.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.0 {status}".encode()) or head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert message in json.loads(content)["error"]
    assert predict(connect(server), test_set[0][:1])[0] == 200


def test_a_head_request_gets_the_501_headers_and_no_body(server, test_set):
    with socket.create_connection(server.server_address[:2], timeout=30) as raw:
        raw.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, content = raw.makefile("rb").read().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501") and b"Content-Length: " in head, head
    assert b"Content-Length: 0" not in head and content == b""
    assert predict(connect(server), test_set[0][:1])[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/models/digits:predict", 405),
        ("POST", "/v1/models/other:predict", 404),
        ("POST", "/v1/models/digits:classify", 404),
        ("GET", "/v1/models/other", 404),
    ],
)
def test_unknown_routes_say_where_to_go(server, method, path, status):
    code, _, answer = request(connect(server), method, path, b"{}" if method == "POST" else None)
    assert code == status and "/v1/models/digits" in answer["error"]


# ------------------------------------------------------------ pictures and the page's files


def picture(image: np.ndarray, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - np.kron(image, np.ones((5, 5), np.uint8))).save(buffer, kind)  # dark on light, 140 x 140
    return buffer.getvalue()


def test_a_posted_picture_is_read_and_answered_with_the_image_the_network_saw(server, classify, test_set):
    images, _ = test_set
    connection = connect(server)
    for image, kind in ((images[0], "PNG"), (images[1], "JPEG")):
        status, _, answer = request(
            connection,
            "POST",
            "/v1/models/digits:predict_picture",
            picture(image, kind),
            {"Content-Type": f"image/{kind.lower()}"},
        )
        assert status == 200
        seen = np.array(answer["preprocessed"], np.uint8)
        if kind == "PNG":
            ink = np.kron(image, np.ones((5, 5), np.uint8)).astype(np.float32)
            assert np.array_equal(seen, to_mnist(255 - (255 - ink)))  # lossless: digits/images.py's exact answer
        assert answer["digit"] == int(classify(seen[np.newaxis]).argmax())
        assert answer["probability"] == pytest.approx(max(answer["probabilities"]), abs=1e-6)


def test_bad_pictures_are_4xx_and_the_server_serves_on(server, test_set):
    connection = connect(server)
    bomb = io.BytesIO()
    Image.new("1", (6000, 6000)).save(bomb, "PNG")  # 36 megapixels in a few kB
    for body, kind, status in (
        (b"not a picture", "image/png", 400),
        (bomb.getvalue(), "image/png", 413),
        (picture(test_set[0][0]), "text/plain", 415),
    ):
        code, _, answer = request(connection, "POST", "/v1/models/digits:predict_picture", body, {"Content-Type": kind})
        assert code == status and answer["error"].startswith(("the picture", "Content-Type")), answer
    assert predict(connection, test_set[0][:1])[0] == 200


def test_the_page_and_its_two_files_are_served_with_their_types(server):
    connection = connect(server)
    for path, name, kind in (
        ("/", "index.html", "text/html"),
        ("/page.js", "page.js", "text/javascript"),
        ("/page.css", "page.css", "text/css"),
    ):
        status, response, content = request(connection, "GET", path)
        assert status == 200 and content == (PAGE_DIR / name).read_bytes()
        assert response.getheader("Content-Type").startswith(kind)
    _, response, page = request(connection, "GET", "/")
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")
    assert b"http://" not in page and b"https://" not in page  # nothing from elsewhere: it works offline


@pytest.mark.parametrize(
    "path",
    [
        "/../digits/server.py",
        "/page.js/../../digits/server.py",
        "/%2e%2e/digits/server.py",
        "/..%2fdigits%2fserver.py",
        "/index.html",
        "/server.py",
        "//etc/passwd",
        "/page/page.js",
        "/digits/page/page.js",
    ],
)
def test_no_path_outside_the_pages_own_three_is_ever_served(server, path):
    connection = connect(server)
    connection.putrequest("GET", path, skip_host=False)  # sent as written: no client-side normalising
    connection.endheaders()
    response = connection.getresponse()
    content = response.read()
    assert response.status == 404 and json.loads(content)["error"].startswith("no ")


def test_sixty_four_clients_connecting_at_once_are_all_answered(server, test_set):
    """A burst of connections fits the listen queue (socketserver's default of 5 reset some clients under load)."""
    body = json.dumps({"instances": test_set[0][:1].tolist()}).encode()
    start, statuses = threading.Barrier(64), []

    def client() -> None:
        start.wait()
        try:
            connection = connect(server)
            for _ in range(5):
                statuses.append(request(connection, "POST", "/v1/models/digits:predict", body)[0])
        except OSError as error:
            statuses.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert statuses == [200] * 320
