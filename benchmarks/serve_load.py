"""stages.serve under load: requests per second, p50 and p99 latency and errors, from N concurrent clients.

Starts ``python -m stages.serve`` on a free port (with and without batching,
alternately, round after round), then sends a bounded number of predict
requests from ``--clients`` threads, each on its own keep-alive connection
over loopback: first single images, then batches of 100. Each request is a
real test-set image, encoded before the clock starts, and every answer is
checked (status 200, the right number of predictions); anything else is an
error. With ``--page``, Chromium also loads the page five times, cache off,
and its load time is printed. Run it on an idle machine: the client shares
the CPU with the server, as it would on a user's machine.

    dvc repro export                        # the model it serves: models/saved_model
    python benchmarks/serve_load.py         # 8 clients, 3 rounds
    python benchmarks/serve_load.py --clients 1 2 8 32 --rounds 5 --page

Last line: ``single_rps=<median> single_p99_ms=<median> errors=<total>`` for batching on at the first client count.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from digits.idx import load_raw_dataset
from digits.paths import SAVED_MODEL
from digits.scratch import RAW_MNIST, ROOT, serving

PREDICT = "/v1/models/digits:predict"


def encoded_bodies(images: np.ndarray, batch: int, count: int) -> list[bytes]:
    """``count`` predict bodies of ``batch`` test images each, cycling through the test set."""
    bodies = []
    for index in range(count):
        start = (index * batch) % (len(images) - batch)
        bodies.append(json.dumps({"instances": images[start : start + batch].tolist()}).encode())
    return bodies


def load(url: str, bodies: list[bytes], *, clients: int, batch: int) -> dict[str, float]:
    """Send every body once, from ``clients`` threads; requests per second, latency percentiles, errors."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    latencies: list[float] = []
    errors: list[str] = []
    start = threading.Barrier(clients + 1)

    def client(mine: list[bytes]) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=60)
        start.wait()
        for body in mine:
            began = time.perf_counter()
            try:
                connection.request("POST", PREDICT, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                content = response.read()
                if response.status != 200 or len(json.loads(content)["predictions"]) != batch:
                    errors.append(f"{response.status}: {content[:200]!r}")
            except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
                errors.append(repr(error))
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
            latencies.append(time.perf_counter() - began)
        connection.close()

    threads = [threading.Thread(target=client, args=(bodies[index::clients],)) for index in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        print(f"    first error of {len(errors)}: {errors[0]}")
    milliseconds = np.array(latencies) * 1000
    return {
        "rps": len(bodies) / elapsed,
        "images_per_s": len(bodies) * batch / elapsed,
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p99_ms": float(np.percentile(milliseconds, 99)),
        "errors": len(errors),
    }


def page_load_ms(url: str, times: int = 5) -> list[float]:
    """Milliseconds from navigation to the page showing which model answers, cache off, ``times`` loads."""
    from tools.chromium import Chromium, find_chromium

    executable = find_chromium()
    if executable is None:
        print("page: no chromium on PATH; skipped")
        return []
    loads = []
    with Chromium(executable) as browser:
        page = browser.open("about:blank")
        page.send("Network.setCacheDisabled", {"cacheDisabled": True})
        for _ in range(times):
            began = time.perf_counter()
            page.navigate(url + "/")
            page.wait_for("document.getElementById('model').textContent.includes('saved_model')", timeout=10)
            loads.append((time.perf_counter() - began) * 1000)
    return loads


def spread(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8], help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=4000, help="single-image requests a round (default 4000)")
    parser.add_argument("--batch-requests", type=int, default=200, help="100-image requests a round (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / SAVED_MODEL)
    parser.add_argument("--page", action="store_true", help="also time the page's load in Chromium")
    args = parser.parse_args()
    if not (args.model / "saved_model.pb").is_file():
        sys.exit(f"error: {args.model}: no SavedModel (run `dvc repro export` first)")

    test_images = load_raw_dataset(RAW_MNIST)["test_images"]
    bodies = {
        1: encoded_bodies(test_images, 1, args.requests),
        100: encoded_bodies(test_images, 100, args.batch_requests),
    }
    modes = {"batching": (), "no batching": ("--no-batching",)}
    results: dict[tuple, list[dict]] = {}
    print(f"{len(bodies[1])} single-image and {len(bodies[100])} 100-image requests a round, {args.rounds} rounds")
    for round_number in range(args.rounds):
        for mode, flags in modes.items():
            with serving(ROOT, "--model", str(args.model), *flags) as (url, _):
                load(url, bodies[1][:200], clients=max(args.clients), batch=1)  # warm-up: TensorFlow's first calls
                for clients in args.clients:
                    for batch in (1, 100):
                        figures = load(url, bodies[batch], clients=clients, batch=batch)
                        results.setdefault((mode, clients, batch), []).append(figures)
                        print(
                            f"  round {round_number + 1} {mode:11} clients {clients:3} batch {batch:3}: "
                            f"{figures['rps']:7.0f} req/s {figures['images_per_s']:8.0f} images/s  "
                            f"p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
                            f"errors {figures['errors']}"
                        )
                if args.page and round_number == 0 and mode == "batching":
                    loads = page_load_ms(url)
                    if loads:
                        print(f"  page load (navigation to the model named, cache off): {spread(loads)} ms")

    print("\nmedian (min-max) over rounds")
    print("| server | clients | images/request | requests/s | images/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (mode, clients, batch), runs in results.items():
        column = {key: [run[key] for run in runs] for key in runs[0]}
        print(
            f"| {mode} | {clients} | {batch} | {spread(column['rps'], 0)} | {spread(column['images_per_s'], 0)} | "
            f"{spread(column['p50_ms'], 2)} | {spread(column['p99_ms'], 2)} | {sum(column['errors'])} |"
        )
    headline = results[("batching", args.clients[0], 1)]
    total_errors = sum(run["errors"] for runs in results.values() for run in runs)
    print(
        f"single_rps={statistics.median(r['rps'] for r in headline):.0f} "
        f"single_p99_ms={statistics.median(r['p99_ms'] for r in headline):.2f} errors={total_errors}"
    )


if __name__ == "__main__":
    main()
