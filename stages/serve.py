"""Serve the exported model: a page to draw digits on, and TensorFlow Serving's REST API.

    python -m stages.serve [--port 8501] [--host 127.0.0.1] [--model models/saved_model]

Open http://127.0.0.1:8501/ and draw. Programs POST to
/v1/models/digits:predict in TF Serving's row format, or send a PNG or JPEG
to /v1/models/digits:predict_picture (docs/serving.md). It loads the
SavedModel the export stage wrote, not the training code, and listens on
this machine only unless ``--host`` says otherwise. Not a DVC stage: it
writes nothing.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from digits.runtime import tf  # noqa: F401 - before any other TensorFlow import: quiet start-up, XLA flags

from digits.classifier import load_classifier, recorded_identity
from digits.errors import PipelineError, run_main
from digits.paths import SAVED_MODEL
from digits.server import DigitServer

DEFAULT_PORT = 8501  # TF Serving's REST port


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the model: a drawing page at / and TF Serving's REST API.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this machine only; 0.0.0.0: every network)"
    )
    parser.add_argument("--model", type=Path, default=SAVED_MODEL)
    parser.add_argument("--no-batching", action="store_true", help="one model call per request")
    parser.add_argument("--access-log", action="store_true", help="a line on stderr for every request")
    args = parser.parse_args()

    # The model, and what the pipeline recorded about it
    classify = load_classifier(args.model)
    identity = recorded_identity() if args.model == SAVED_MODEL else {"weights_md5": None, "test_accuracy": None}
    identity["saved_model"] = str(args.model)

    # Serve until Ctrl-C
    server = listen(
        args.host,
        args.port,
        classify=classify,
        identity=identity,
        batching=not args.no_batching,
        access_log=args.access_log,
    )
    host, port = server.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"serve: listening on {args.host}: anyone who can reach this machine can use the model", file=sys.stderr)
    print(f"serve: {args.model} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("serve: stopped", file=sys.stderr)
    finally:
        server.server_close()


def listen(host: str, port: int, **options: object) -> DigitServer:
    """The server bound to ``host:port`` (``options``: DigitServer's), or a PipelineError saying why it cannot be."""
    if not 0 <= port <= 65535:
        raise PipelineError(f"--port {port}: a port is 0-65535 (0 picks a free one)")
    try:
        return DigitServer((host, port), **options)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise PipelineError(f"port {port} on {host} is in use (another server?); --port picks another") from None
        raise PipelineError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


if __name__ == "__main__":
    run_main(main, has_outputs=False)
