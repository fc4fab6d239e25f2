"""rnncap.serve.batching.MicroBatcher: photos queued together run as one batch per key, within the queue's bound;
cancelled photos are skipped, a failing batch fails its own photos only, stop() finishes what is queued."""

from __future__ import annotations

import threading
import time

import pytest

from rnncap.serve.batching import MicroBatcher, QueueFullError


class Recorder:
    """A batch function that remembers every batch it ran: (key, items) -> one result per item."""

    def __init__(self, fail_on: object = None) -> None:
        self.batches: list[tuple[object, list[object]]] = []
        self.fail_on = fail_on

    def __call__(self, key, items):
        self.batches.append((key, list(items)))
        if key == self.fail_on:
            raise RuntimeError(f"batch {key} failed")
        return [f"{key}:{item}:{len(items)}" for item in items]


def test_photos_queued_together_run_as_one_batch() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_queue=8, max_batch=8, window_s=0.05)
    futures = [batcher.submit("k", n) for n in range(5)]  # queued before the worker starts: all waiting at once
    batcher.start()
    assert [f.result(timeout=5) for f in futures] == [f"k:{n}:5" for n in range(5)]
    batcher.stop()
    assert run.batches == [("k", [0, 1, 2, 3, 4])]
    stats = batcher.stats()
    assert stats.batch_sizes == {5: 1} and stats.photos == 5 and stats.waiting == 0


def test_a_batch_holds_at_most_max_batch_and_one_key() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_queue=16, max_batch=3, window_s=0.05)
    futures = [batcher.submit("a" if n % 2 else "b", n) for n in range(7)]
    batcher.start()
    results = [f.result(timeout=5) for f in futures]
    batcher.stop()
    assert [r.split(":")[1] for r in results] == [str(n) for n in range(7)]  # each photo its own result
    assert all(len(items) <= 3 for _, items in run.batches)
    assert all(len({n % 2 for n in items}) == 1 for _, items in run.batches)  # never two keys in one search
    assert sum(len(items) for _, items in run.batches) == 7


def test_the_window_collects_photos_that_arrive_just_after_the_first() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_queue=8, max_batch=8, window_s=0.5)
    batcher.start()
    first = batcher.submit("k", 0)
    time.sleep(0.05)  # well inside the window
    second = batcher.submit("k", 1)
    assert (first.result(timeout=5), second.result(timeout=5)) == ("k:0:2", "k:1:2")
    batcher.stop()


def test_past_max_queue_submit_refuses_at_once() -> None:
    batcher = MicroBatcher(Recorder(), max_queue=2, max_batch=2, window_s=0)
    batcher.submit("k", 0), batcher.submit("k", 1)
    with pytest.raises(QueueFullError, match="2 photos are waiting"):
        batcher.submit("k", 2)
    assert batcher.stats().waiting == 2


def test_cancelled_photos_are_skipped() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_queue=4, max_batch=4, window_s=0)
    gone, kept = batcher.submit("k", "gone"), batcher.submit("k", "kept")
    assert gone.cancel()
    batcher.start()
    assert kept.result(timeout=5) == "k:kept:1"
    batcher.stop()
    assert run.batches == [("k", ["kept"])]


def test_a_failing_batch_fails_its_photos_and_the_worker_goes_on() -> None:
    run = Recorder(fail_on="bad")
    batcher = MicroBatcher(run, max_queue=4, max_batch=4, window_s=0)
    bad, good = batcher.submit("bad", 0), batcher.submit("good", 1)
    batcher.start()
    with pytest.raises(RuntimeError, match="batch bad failed"):
        bad.result(timeout=5)
    assert good.result(timeout=5) == "good:1:1"
    assert batcher.submit("good", 2).result(timeout=5) == "good:2:1"
    batcher.stop()


def test_stop_captions_what_is_queued_first() -> None:
    release = threading.Event()

    def slow(key, items):
        release.wait(5)
        return list(items)

    batcher = MicroBatcher(slow, max_queue=4, max_batch=1, window_s=0)
    batcher.start()
    futures = [batcher.submit("k", n) for n in range(3)]
    stopper = threading.Thread(target=batcher.stop)
    stopper.start()
    release.set()
    stopper.join(5)
    assert not stopper.is_alive() and [f.result(timeout=0) for f in futures] == [0, 1, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_queue": 0}, "max_queue"), ({"max_batch": 1.5}, "max_batch"), ({"window_s": -1}, "window_s")],
)
def test_bad_settings_are_refused(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        MicroBatcher(Recorder(), **options)
