"""One model call for many concurrent requests: whatever has queued while the model was busy runs as one batch.

The model is small, so a call costs mostly its fixed overhead (a few hundred
microseconds in TensorFlow's function call) whatever the batch size. The
callers take turns running the model themselves: a caller that finds the
model free runs it at once, on its own thread, for its own images and every
request queued so far (a lone request pays nothing: no other thread, no
waiting window); a caller that finds it busy queues its images and waits, and
the running caller takes them into its next batch, or, once its own answer is
in, hands the model to the first waiting caller. benchmarks/serve_load.py
measures it against one call per request (``stages.serve --no-batching``).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable

import numpy as np

Model = Callable[[np.ndarray], np.ndarray]


class _Pending:
    """One caller's images; its ``signal`` is set when its answer is in or when it is asked to run the model."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.signal = threading.Event()
        self.answered = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


class Batcher:
    """Call ``model`` once for all the requests that are waiting, at most ``max_batch`` images a call, from any
    number of threads."""

    def __init__(self, model: Model, *, max_batch: int = 1000) -> None:
        self.model, self.max_batch = model, max_batch
        self.calls = self.requests = 0  # model calls and the requests they answered (requests / calls: mean batch)
        self._queue: collections.deque[_Pending] = collections.deque()
        self._running = threading.Lock()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``model(images)``, run together with whatever other requests are waiting."""
        pending = _Pending(images)
        self._queue.append(pending)
        while not pending.answered:
            if self._running.acquire(blocking=False):
                try:
                    while not pending.answered:
                        self._run_batch()
                finally:
                    self._running.release()
                if self._queue:  # queued while this caller ran, after its last batch: the first of them runs next
                    self._queue[0].signal.set()
            else:
                # The running caller answers this request or, when done with its own, asks this one to run next.
                # It checks the queue after releasing the model, and this request was queued before the model was
                # found busy, so it is never left waiting with the model free.
                pending.signal.wait()
                pending.signal.clear()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _run_batch(self) -> None:
        """Take queued requests, oldest first, up to ``max_batch`` images (at least one request), and answer them."""
        batch = [self._queue.popleft()]
        count = len(batch[0].images)
        while self._queue and count + len(self._queue[0].images) <= self.max_batch:
            batch.append(self._queue.popleft())
            count += len(batch[-1].images)
        self.calls += 1
        self.requests += len(batch)
        try:
            answers = self.model(np.concatenate([pending.images for pending in batch]))
        except Exception as error:  # every caller of the batch gets the model's error
            answers, failure = None, error
        start = 0
        for pending in batch:
            if answers is None:
                pending.error = failure
            else:
                pending.result = answers[start : start + len(pending.images)]
                start += len(pending.images)
            pending.answered = True
            pending.signal.set()
