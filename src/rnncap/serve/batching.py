"""Micro-batching: photos that arrive together are captioned together, on one worker thread.

::

    batcher = MicroBatcher(run, max_queue=64, max_batch=16, window_s=0.02)
    batcher.start()
    future = batcher.submit(("flickr8k-attention", 3, None, True), image)   # QueueFullError past max_queue
    result = await asyncio.wrap_future(future)
    batcher.stop()                                                          # what is queued is still captioned

The worker takes the first waiting photo, then waits at most ``window_s`` for more (up to ``max_batch``), and
calls ``run(key, photos)`` once per key among them (a key holds what must be the same for photos searched
together: the model and the search options). One encoder run and one batched search for B photos cost far less
than B runs of one: the encoder's convolutions and the search's matrix products are the work, and they grow less
than linearly with B on a CPU. One thread, so that the server never runs two batches against each other on the
same cores (the requests' own threads only read uploads and decode photos).

The queue is bounded: past ``max_queue`` waiting photos, :meth:`MicroBatcher.submit` refuses at once (the server
answers 503 with ``Retry-After``) instead of growing a backlog that no client will wait for. A photo whose request
gave up (timed out, or its client left) is cancelled and skipped when its turn comes.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

Run = Callable[[Any, Sequence[Any]], Sequence[Any]]  # (key, B photos) -> B results, in order


class QueueFullError(Exception):
    """The batcher holds ``max_queue`` photos already: try again later."""


@dataclass
class _Job:
    key: Hashable
    item: Any
    future: Future = field(default_factory=Future)


_STOP = _Job("stop", None)  # the worker's signal to finish what is queued and return


@dataclass(frozen=True)
class BatcherStats:
    """What the batcher has done: ``batch_sizes`` counts the batches run by their number of photos."""

    waiting: int
    max_queue: int
    max_batch: int
    photos: int
    batch_sizes: dict[int, int]
    last_batch_s: float


class MicroBatcher:
    """A bounded queue of photos and one worker thread that captions them a batch at a time (module docstring)."""

    def __init__(self, run: Run, *, max_queue: int = 64, max_batch: int = 16, window_s: float = 0.02) -> None:
        """Args:
        run: captions one batch: ``run(key, items) -> results``, one result per item, in order.
        max_queue: the most photos waiting; :meth:`submit` raises QueueFullError past it.
        max_batch: the most photos run together.
        window_s: how long the worker waits for more photos after the first of a batch.
        """
        for name, value in (("max_queue", max_queue), ("max_batch", max_batch)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0 seconds, got {window_s!r}")
        self._run = run
        self._queue: queue.Queue[_Job] = queue.Queue(maxsize=max_queue)
        self._max_queue, self._max_batch, self._window_s = max_queue, max_batch, window_s
        self._lock = threading.Lock()
        self._sizes: Counter[int] = Counter()
        self._photos = 0
        self._last_batch_s = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (photos submitted before wait for it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="rnncap-batcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Let the worker caption every photo queued so far, then end it."""
        if self._thread is not None:
            self._queue.put(_STOP)  # blocks while the queue is full: the worker is emptying it
            self._thread.join()
            self._thread = None

    def submit(self, key: Hashable, item: Any) -> Future:
        """Queue one photo; returns the future of its result. Raises QueueFullError when ``max_queue`` are waiting."""
        job = _Job(key, item)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self._max_queue} photos are waiting already") from None
        return job.future

    def stats(self) -> BatcherStats:
        with self._lock:
            return BatcherStats(
                self._queue.qsize(),
                self._max_queue,
                self._max_batch,
                self._photos,
                dict(sorted(self._sizes.items())),
                self._last_batch_s,
            )

    def _work(self) -> None:
        while True:
            batch, stopping = self._collect()
            for key, jobs in _by_key(batch).items():
                self._run_jobs(key, jobs)
            if stopping:
                return

    def _collect(self) -> tuple[list[_Job], bool]:
        """The next batch: the first job waited for, then more until the window closes or the batch is full."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_batch:
            try:
                job = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            batch.append(job)
        return batch, False

    def _run_jobs(self, key: Hashable, jobs: list[_Job]) -> None:
        """Run the jobs still wanted as one batch and hand each its result (or the batch's error)."""
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # False: its request gave up
        if not live:
            return
        started = time.perf_counter()
        try:
            results = self._run(key, [job.item for job in live])
        except Exception as err:  # the requests answer with it; the worker goes on
            for job in live:
                job.future.set_exception(err)
            return
        finally:
            with self._lock:
                self._sizes[len(live)] += 1
                self._photos += len(live)
                self._last_batch_s = time.perf_counter() - started
        for job, result in zip(live, results, strict=True):
            job.future.set_result(result)


def _by_key(batch: list[_Job]) -> dict[Hashable, list[_Job]]:
    """The batch's jobs grouped by key, in order of arrival."""
    groups: dict[Hashable, list[_Job]] = {}
    for job in batch:
        groups.setdefault(job.key, []).append(job)
    return groups
