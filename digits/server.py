"""The HTTP server of stages/serve.py: the drawing page and TensorFlow Serving's REST API, from the standard library.

Python's own ``http.server`` (a thread per connection, HTTP/1.1 keep-alive)
and nothing else: the server adds no package to install, nothing for the
stages to import, and it is fast enough for its job, a person drawing and a
program on the same machine sending a few hundred requests a second
(docs/serving.md has the measurements and the choice). What a careful
public server needs is here too: bodies over a stated size are refused
before they are read, a slow client times out, each bad request gets a 4xx
with ``{"error": ...}`` and the connection serves the next one, and the only
files ever sent are the page's own three, named in ``PAGE_FILES``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from digits.batcher import Batcher
from digits.rest import (
    MAX_BODY_BYTES,
    MAX_INSTANCES,
    MODEL_NAME,
    RequestError,
    model_metadata,
    model_status,
    parse_picture,
    parse_predict_request,
    picture_response,
    predict_response,
)

PAGE_DIR = Path(__file__).resolve().parent / "page"
# URL -> (file in PAGE_DIR, Content-Type): the whole of what GET serves from disk; no path is ever joined
PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}
MODEL_PATH = f"/v1/models/{MODEL_NAME}"
PREDICT_PATH = f"{MODEL_PATH}:predict"
PICTURE_PATH = f"{MODEL_PATH}:predict_picture"
CLIENT_TIMEOUT_S = 30  # a connection that sends nothing for this long is closed
PICTURES_AT_ONCE = 2  # pictures decoded at the same time: each may take ~0.5 GB while it is decoded


class DigitServer(ThreadingHTTPServer):
    """Serves one classifier; ``batching`` sends every request's images through one Batcher."""

    daemon_threads = True  # Ctrl-C does not wait for idle keep-alive connections
    allow_reuse_address = True  # a restarted server gets its port back at once
    # Connections waiting to be accepted; socketserver's default of 5 reset clients when 32 connected at once.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        *,
        classify: Callable[[np.ndarray], np.ndarray],
        identity: dict,
        batching: bool = True,
        access_log: bool = False,
    ) -> None:
        self.batcher = Batcher(classify, max_batch=MAX_INSTANCES) if batching else None
        self.classify = self.batcher or classify
        self.identity, self.access_log = identity, access_log
        self.pictures = threading.BoundedSemaphore(PICTURES_AT_ONCE)
        self.page = {url: ((PAGE_DIR / name).read_bytes(), kind) for url, (name, kind) in PAGE_FILES.items()}
        super().__init__(address, RequestHandler)


class RequestHandler(BaseHTTPRequestHandler):
    server: DigitServer
    protocol_version = "HTTP/1.1"  # keep-alive: a client's requests share one connection
    server_version = "digits-serve"
    sys_version = ""
    timeout = CLIENT_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle's algorithm the second waits for the client's delayed ACK
    # of the first, 40 ms on Linux: a keep-alive client's every request took 44 ms (benchmarks/serve_load.py).
    disable_nagle_algorithm = True

    # Routes

    def do_GET(self) -> None:
        self.answer(self.route_get)

    def do_POST(self) -> None:
        self.body_read = False
        self.answer(self.route_post)

    def route_get(self, path: str) -> tuple[int, object]:
        if path in self.server.page:
            return HTTPStatus.OK, self.server.page[path]
        if path == MODEL_PATH:
            return HTTPStatus.OK, model_status()
        if path == f"{MODEL_PATH}/metadata":
            return HTTPStatus.OK, model_metadata(self.server.identity)
        if path in (PREDICT_PATH, PICTURE_PATH):
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} takes POST")
        raise RequestError(HTTPStatus.NOT_FOUND, f"no {path} here; the page is at / and the model at {MODEL_PATH}")

    def route_post(self, path: str) -> tuple[int, object]:
        if path == PREDICT_PATH:
            images = parse_predict_request(self.read_body())
            return HTTPStatus.OK, predict_response(self.server.classify(images))
        if path == PICTURE_PATH:
            body = self.read_body()
            with self.server.pictures:
                image = parse_picture(body, self.headers.get("Content-Type", ""))
            return HTTPStatus.OK, picture_response(image, self.server.classify(image[np.newaxis])[0])
        if path.startswith("/v1/models/"):
            raise RequestError(
                HTTPStatus.NOT_FOUND, f"no {path}; POST {PREDICT_PATH} (TF Serving's row format) or {PICTURE_PATH}"
            )
        raise RequestError(HTTPStatus.NOT_FOUND, f"no {path} here; POST {PREDICT_PATH}")

    # Reading and answering

    def read_body(self) -> bytes:
        """The request's body, refused unread when it says it is larger than MAX_BODY_BYTES."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not read; send a Content-Length")
        header = self.headers.get("Content-Length", "")
        if not header.isdigit():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length header")
        length = int(header)
        if length > MAX_BODY_BYTES:
            raise RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"a body of {length:,} bytes; at most {MAX_BODY_BYTES:,} ({MAX_BODY_BYTES // 2**20} MiB)",
            )
        body = self.rfile.read(length)
        self.body_read = True
        if len(body) < length:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {length} bytes")
        return body

    def answer(self, route: Callable[[str], tuple[int, object]]) -> None:
        """Run ``route`` on the path (without its query) and send what it returns: page bytes, or JSON; a RequestError
        or a bug as JSON errors."""
        try:
            status, content = route(self.path.split("?", 1)[0])
        except RequestError as error:
            status, content = error.status, {"error": error.message}
        except Exception as error:  # a bug, not the client's fault: say so, keep serving
            print(f"serve: {self.command} {self.path}: {type(error).__name__}: {error}", file=sys.stderr)
            status, content = HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"}
        if self.command == "POST" and not self.body_read:
            self.close_connection = True  # the body is still in the stream: the connection cannot carry another request
        if isinstance(content, tuple):
            self.send(status, *content)
        else:
            self.send(status, json.dumps(content).encode(), "application/json")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a malformed request line, an unknown method) as JSON too, closing the
        connection."""
        if self.request_version == "HTTP/0.9":  # a request line it could not read: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        self.send(code, json.dumps({"error": message or HTTPStatus(code).phrase}).encode(), "application/json", message)

    def send(self, status: int, body: bytes, kind: str, reason: str | None = None) -> None:
        """One answer: status line, headers and body.

        The body goes with every answer but one to HEAD: this server has no ``do_HEAD``, so a HEAD request gets
        send_error's 501, whose headers still say the length of the JSON error it leaves out. No status it sends
        is one that HTTP forbids a body (1xx, 204, 304): its routes answer 200, 4xx or 5xx, and http.server calls
        send_error with 4xx and 5xx only.
        """
        self.send_response(status, reason)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if kind.startswith("text/html"):  # the page runs its own script and nothing from elsewhere
            self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.access_log:
            super().log_message(format, *args)
