"""digits/batcher.py: many threads' requests share model calls, and each caller gets exactly its own rows back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import RAW_MNIST
from digits.batcher import Batcher
from digits.idx import load_raw_dataset


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return load_raw_dataset(RAW_MNIST)["test_images"][:400]


def ink_per_row(batch: np.ndarray) -> np.ndarray:
    """A model whose answer for each image depends on that image alone: its ink in each of the 28 rows."""
    return batch.astype(np.float32).sum(axis=2)


def slow(model, seconds: float, calls: list[int]):
    def run(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        time.sleep(seconds)  # a busy model: requests queue meanwhile
        return model(batch)

    return run


def call_from_threads(batcher: Batcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    answers: list = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def client(index: int) -> None:
        start.wait()
        answers[index] = batcher(requests[index])

    threads = [threading.Thread(target=client, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def test_concurrent_callers_share_calls_and_each_gets_its_own_rows(images):
    calls: list[int] = []
    batcher = Batcher(slow(ink_per_row, 0.02, calls), max_batch=1000)
    sizes = [1, 3, 1, 7, 2, 1, 1, 5, 1, 1, 4, 1, 1, 1, 2, 1]
    starts = np.cumsum([0, *sizes[:-1]])
    requests = [images[start : start + size] for start, size in zip(starts, sizes)]
    answers = call_from_threads(batcher, requests)
    for request, answer in zip(requests, answers):
        assert np.array_equal(answer, ink_per_row(request))
    assert sum(calls) == sum(sizes)
    assert len(calls) < len(requests), calls  # some calls answered several requests
    assert (batcher.calls, batcher.requests) == (len(calls), len(requests))


def test_a_lone_request_runs_at_once_on_its_callers_own_thread(images):
    threads_run_on = []

    def model(batch: np.ndarray) -> np.ndarray:
        threads_run_on.append(threading.current_thread())
        return ink_per_row(batch)

    batcher = Batcher(model)
    for count in (1, 2, 1):
        assert np.array_equal(batcher(images[:count]), ink_per_row(images[:count]))
    assert (batcher.calls, batcher.requests) == (3, 3)
    assert threads_run_on == [threading.current_thread()] * 3  # no hand-off to another thread, no waiting


def test_under_a_storm_of_callers_every_request_is_answered_with_its_own_rows(images):
    """32 threads, 40 requests each of 1 to 9 images, on a model that yields the GIL: no request is lost or mixed."""

    def model(batch: np.ndarray) -> np.ndarray:
        time.sleep(0.0005)
        return ink_per_row(batch)

    batcher = Batcher(model, max_batch=20)
    wrong, done = [], []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(40):
            start, size = int(rng.integers(0, 390)), int(rng.integers(1, 10))
            if not np.array_equal(batcher(images[start : start + size]), ink_per_row(images[start : start + size])):
                wrong.append((seed, start, size))
        done.append(seed)

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert (sorted(done), wrong) == (list(range(32)), [])
    assert batcher.requests == 32 * 40 and batcher.calls < batcher.requests


def test_no_call_exceeds_max_batch(images):
    calls: list[int] = []
    batcher = Batcher(slow(ink_per_row, 0.01, calls), max_batch=100)
    requests = [images[i * 40 : (i + 1) * 40] for i in range(10)]
    answers = call_from_threads(batcher, requests)
    assert max(calls) <= 100 and sum(calls) == 400
    assert all(np.array_equal(a, ink_per_row(r)) for a, r in zip(answers, requests))


def test_a_failing_call_fails_its_callers_and_the_next_call_still_runs(images):
    def fails_on_blank(batch: np.ndarray) -> np.ndarray:
        if (batch.reshape(len(batch), -1).max(axis=1) == 0).any():
            raise ValueError("a blank image")
        return ink_per_row(batch)

    batcher = Batcher(fails_on_blank)
    with pytest.raises(ValueError, match="a blank image"):
        batcher(np.zeros((1, 28, 28), np.uint8))
    assert np.array_equal(batcher(images[:2]), ink_per_row(images[:2]))
