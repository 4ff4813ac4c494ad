"""Dynamic batching: the features of every request in one queue, run by one worker thread in batches under a
padded-token budget.

Each request is featurized on its own (so its lengths are known and its inputs checked), then its features are
queued. The worker takes the oldest queued feature and the features closest to it in length, as many as
``max_batch_size`` and ``max_batch_tokens`` (batch size x longest feature) allow, runs them as one model batch,
and hands each request its outputs once all of its features are done. It is continuous: a batch starts as soon
as the worker is free and something is queued (``window_s`` > 0: it first waits up to that long for a fuller
batch). The oldest feature is in every batch, so a long text is never starved by a stream of short ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Sequence

log = logging.getLogger("electra.serve")

CANDIDATES_PER_BATCH = 8  # look at the oldest max_batch_size x 8 queued features when forming a batch


class Job:
    """One request's features on their way through the model."""

    __slots__ = ("features", "outputs", "remaining", "future", "cancelled")

    def __init__(self, features: Sequence[dict]):
        self.features = features
        self.outputs: list[Any] = [None] * len(features)
        self.remaining = len(features)
        self.future: Future = Future()
        self.cancelled = False

    def cancel(self) -> None:
        """The request gave up (timeout, disconnect): its queued features are dropped."""
        self.cancelled = True
        self.future.cancel()


class Batcher:
    """``submit(features)`` -> a Future of the outputs, in order; ``run_batch(features)`` -> outputs runs a batch."""

    def __init__(self, run_batch: Callable[[list[dict]], list], max_batch_tokens: int, max_batch_size: int,
                 window_s: float = 0.0, telemetry=None):
        self.run_batch = run_batch
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self.telemetry = telemetry
        self._pending: deque = deque()  # (job, feature index, length), oldest first
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="electra-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def queued(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------ requests
    def submit(self, features: Sequence[dict]) -> Job:
        job = Job(features)
        if not features:
            job.future.set_result([])
            return job
        with self._cond:
            if self._stopping:
                raise RuntimeError("the batcher has stopped")
            for i, f in enumerate(features):
                self._pending.append((job, i, len(f["input_ids"])))
            self._gauge()
            self._cond.notify()
        return job

    # ------------------------------------------------------------------ worker
    def _gauge(self) -> None:
        if self.telemetry is not None:
            self.telemetry.queue.set(len(self._pending))

    def _take(self) -> list[tuple]:
        """The next batch (under the lock): the oldest live feature and its nearest neighbours in length."""
        while self._pending and self._pending[0][0].cancelled:
            self._pending.popleft()
        if not self._pending:
            return []
        limit = self.max_batch_size * CANDIDATES_PER_BATCH
        candidates = [e for _, e in zip(range(limit), self._pending) if not e[0].cancelled]
        order = sorted(range(len(candidates)), key=lambda i: candidates[i][2])
        at = order.index(0)  # the oldest, in length order
        lo = hi = at
        longest = candidates[0][2]
        # Shorter neighbours first (they do not raise the padded length), then longer ones while the budget holds.
        while hi - lo + 1 < self.max_batch_size:
            if lo > 0 and (hi - lo + 2) * longest <= self.max_batch_tokens:
                lo -= 1
            elif hi + 1 < len(order) and (hi - lo + 2) * candidates[order[hi + 1]][2] <= self.max_batch_tokens:
                hi += 1
                longest = candidates[order[hi]][2]
            else:
                break
        chosen = [candidates[order[k]] for k in range(lo, hi + 1)]
        taken = {id(e) for e in chosen}
        self._pending = deque(e for e in self._pending if id(e) not in taken and not e[0].cancelled)
        self._gauge()
        return chosen

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending and self._stopping:
                    return
                if self.window_s > 0 and not self._stopping and len(self._pending) < self.max_batch_size:
                    deadline = time.monotonic() + self.window_s
                    while len(self._pending) < self.max_batch_size and not self._stopping:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                batch = self._take()
            if batch:
                self._run(batch)

    def _run(self, batch: list[tuple]) -> None:
        features = [job.features[i] for job, i, _ in batch]
        start = time.perf_counter()
        try:
            outputs = self.run_batch(features)
        except BaseException as e:  # noqa: BLE001 - a failed batch fails its requests, not the worker
            log.error("model batch of %d features failed: %s: %s", len(features), type(e).__name__, e)
            for job in {id(j): j for j, _, _ in batch}.values():
                if not job.future.done():
                    try:
                        job.future.set_exception(e)
                    except Exception:  # noqa: BLE001 - cancelled meanwhile
                        pass
            return
        if self.telemetry is not None:
            lengths = [n for _, _, n in batch]
            self.telemetry.batch(len(batch), len(batch) * max(lengths), sum(lengths), time.perf_counter() - start)
        for (job, i, _), out in zip(batch, outputs):
            job.outputs[i] = out
            job.remaining -= 1
            if job.remaining == 0 and not job.future.done():
                try:
                    job.future.set_result(job.outputs)
                except Exception:  # noqa: BLE001 - cancelled between the check and here
                    pass
