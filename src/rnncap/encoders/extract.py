"""Batch feature extraction from photo files: decoding on worker processes, overlapped with inference.

Decoding and resizing run in ``workers`` processes (spawned, so they import Pillow and NumPy only) a few chunks
ahead of the encoder, with a bounded window of chunks in flight so memory stays flat however many photos there
are. Results come back in submission order, which makes everything reported deterministic: the same paths, skip
set and batch size give the same batches in the same order, whatever the workers' timing.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from rnncap.encoders.encoder import Encoder
from rnncap.encoders.preprocess import load_images

log = logging.getLogger(__name__)

_Decoded = tuple[int, np.ndarray | None, str]  # (index, (S, S, 3) uint8 or None, error message or "")


@dataclass
class ExtractionReport:
    """What :func:`extract_features` did.

    Attributes:
        encoded: photos whose features were passed to ``on_batch``.
        skipped: photos left out because their index was in ``skip``.
        failed: (index, message) of each photo that could not be read, in index order.
        seconds: wall time of the whole call.
    """

    encoded: int = 0
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Photos encoded or found unreadable, per second of wall time."""
        return (self.encoded + len(self.failed)) / self.seconds if self.seconds > 0 else 0.0


def extract_features(
    encoder: Encoder,
    paths: Sequence[str | os.PathLike],
    on_batch: Callable[[np.ndarray, np.ndarray, np.ndarray | None], None],
    *,
    on_error: Callable[[int, str], None] | None = None,
    skip: Iterable[int] = (),
    batch_size: int = 32,
    workers: int = 2,
    with_grid: bool = True,
    progress: bool = True,
    desc: str | None = None,
    position: int | None = None,
) -> ExtractionReport:
    """Encode photo files batch by batch; returns an :class:`ExtractionReport` of what was done.

    Every index of ``paths`` not in ``skip`` ends up in exactly one ``on_batch`` call or one ``on_error`` call,
    in increasing index order. An unreadable file (missing, not an image, truncated, corrupt) costs only itself:
    the other photos of its batch are encoded as usual.

    Args:
        encoder: from :func:`rnncap.encoders.load_encoder`.
        paths: M photo files; their position in the sequence is the index reported back.
        on_batch: called as ``on_batch(indices, pooled, grid)`` with indices (B,) int64 (increasing), pooled
            (B, C) float32 and grid (B, L, C) float32, or None without ``with_grid``; B <= ``batch_size``. Every
            batch but the last is full.
        on_error: called as ``on_error(index, message)`` for each unreadable photo, before the ``on_batch`` call
            of the batch it would have been in; the message starts with the path. Default: log a warning.
        skip: indices to leave out, e.g. those already done by an interrupted run.
        batch_size: photos per inference.
        workers: decoding processes; 0 decodes in this process, between inferences (no overlap).
        with_grid: compute and pass the grid features.
        progress: show a progress bar with photos per second.
        desc: the bar's label (default "ENCODER features"), e.g. naming the shard of a sharded extraction.
        position: the bar's line, for several processes sharing one terminal (one per shard).

    Worker processes are started with "spawn" (fork is unsafe once inference threads exist): each imports the
    calling script as a module, so a script calling this with ``workers > 0`` needs the usual
    ``if __name__ == "__main__":`` guard, and should import torch inside it, not at the top, or every worker
    spends seconds importing torch before it decodes anything.
    """
    skip_set = _check_arguments(len(paths), skip, batch_size, workers)
    start = time.perf_counter()
    tasks = [(i, os.fspath(p)) for i, p in enumerate(paths) if i not in skip_set]
    report = ExtractionReport(skipped=len(skip_set))

    desc = f"{encoder.name} features" if desc is None else desc
    with tqdm(total=len(tasks), unit="img", desc=desc, position=position, disable=not progress) as bar:

        def unreadable(index: int, message: str) -> None:
            report.failed.append((index, message))
            if on_error is None:
                log.warning("skipping unreadable photo %s", message)
            else:
                on_error(index, message)
            bar.update(1)

        for indices, images in _batches(_decode(tasks, encoder, batch_size, workers), batch_size, unreadable):
            pooled, grid = encoder.encode_preprocessed(images, with_grid=with_grid)
            on_batch(indices, pooled, grid)
            report.encoded += len(indices)
            bar.update(len(indices))
    report.seconds = time.perf_counter() - start
    return report


def _check_arguments(num_paths: int, skip: Iterable[int], batch_size: int, workers: int) -> set[int]:
    """The indices to skip, after checking them and the sizes."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    skip_set = {int(i) for i in skip}
    outside = sorted(i for i in skip_set if not 0 <= i < num_paths)
    if outside:
        raise ValueError(f"skip holds indices outside 0..{num_paths - 1}, e.g. {outside[:3]}")
    return skip_set


def _batches(
    decoded: Iterable[_Decoded], batch_size: int, unreadable: Callable[[int, str], None]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Group decoded photos into (B,) int64 indices and (B, S, S, 3) uint8 squares, B = ``batch_size`` but for the
    last batch; an unreadable photo goes to ``unreadable(index, message)`` as it comes, so before the batch it
    would have been in."""
    indices: list[int] = []
    images: list[np.ndarray] = []
    for index, image, message in decoded:
        if image is None:
            unreadable(index, message)
            continue
        indices.append(index)
        images.append(image)
        if len(indices) == batch_size:
            yield np.asarray(indices, dtype=np.int64), np.stack(images)
            indices, images = [], []
    if indices:
        yield np.asarray(indices, dtype=np.int64), np.stack(images)


def _decode(tasks: list[tuple[int, str]], encoder: Encoder, batch_size: int, workers: int) -> Iterator[_Decoded]:
    """Load every task's photo, yielding results in task order."""
    size, crop = encoder.spec.image_size, encoder.spec.crop_fraction
    if workers == 0:
        for task in tasks:
            yield from load_images([task], size, crop)
        return
    # Chunks small enough that every worker has work within a batch, large enough that the per-chunk
    # overhead (pickling, a pipe round trip) stays negligible next to decoding.
    chunk = max(1, math.ceil(batch_size / (2 * workers)))
    chunks = (tasks[k : k + chunk] for k in range(0, len(tasks), chunk))
    window = max(2 * workers, 2 * math.ceil(batch_size / chunk))  # about two batches decoded ahead
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    pending: deque[Future[list[_Decoded]]] = deque()
    try:
        for part in chunks:
            pending.append(executor.submit(load_images, part, size, crop))
            if len(pending) >= window:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
    finally:
        # Also reached when the caller stops early (an exception in on_batch): drop the queued work.
        executor.shutdown(wait=True, cancel_futures=True)
