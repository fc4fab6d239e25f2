"""CaptionData: one split of a captioning data set, as the trainer reads it and the data readers return it.

Its features are an ndarray in memory or any :class:`FeatureSource`, e.g. the streamed rows of a prepared HDF5
file (:mod:`rnncap.data.stream`), which reads only the rows a batch needs: COCO 2014's 25 GB of float16 grids
then train in bounded memory. :meth:`CaptionData.batches` reads the batches of a given order ahead of their use
in a background thread.

It depends on NumPy, :mod:`rnncap.text` and the block arithmetic of :mod:`rnncap.train.distributed` alone, so
that the data layer (``rnncap.data``) can build it without importing the trainer, its progress bars or the models.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rnncap.checks import is_integer
from rnncap.text import check_caption_ids
from rnncap.train.distributed import block


@runtime_checkable
class FeatureSource(Protocol):
    """(M, D) or (M, L, D) features that are read a few rows at a time instead of held in memory.

    ``take(rows)`` returns the (N, ...) rows ``rows`` (N,) (in that order, repeats allowed) as an ndarray of
    ``dtype``. ``close()`` releases what the source holds open (a file); ``take`` fails clearly after it.
    """

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    @property
    def ndim(self) -> int: ...

    def __len__(self) -> int: ...

    def take(self, rows: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


Features = np.ndarray | FeatureSource
Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # (idx (N,), features (N, ...), captions (N, T))


def take_rows(features: Features, rows: np.ndarray) -> np.ndarray:
    """(N, ...) rows ``rows`` (N,) of an ndarray or a :class:`FeatureSource`, as an ndarray."""
    return features[rows] if isinstance(features, np.ndarray) else features.take(rows)


class ConcatFeatures:
    """The rows of several feature sources (or arrays) of one shape and dtype, one after the other: the features
    of a joint run over several prepared files, each streamed from its own (``take`` reads each part's rows)."""

    def __init__(self, parts: Sequence[Features]) -> None:
        if not parts:
            raise ValueError("ConcatFeatures needs at least one part")
        first = parts[0]
        for i, part in enumerate(parts):
            if part.shape[1:] != first.shape[1:] or part.dtype != first.dtype:
                raise ValueError(
                    f"part {i} holds rows of shape {part.shape[1:]} {part.dtype}, "
                    f"part 0 {first.shape[1:]} {first.dtype}: a concatenation needs one shape and dtype"
                )
        self.parts = list(parts)
        self._starts = np.cumsum([0] + [len(part) for part in parts])  # (P + 1,)
        self.shape: tuple[int, ...] = (int(self._starts[-1]), *first.shape[1:])
        self.dtype: np.dtype = np.dtype(first.dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(N, ...) rows ``rows`` (N,) of the concatenation, in that order."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows must be in [0, {len(self)}), got {rows.min()}..{rows.max()}")
        out = np.empty((rows.size, *self.shape[1:]), dtype=self.dtype)
        part_of = np.searchsorted(self._starts, rows, side="right") - 1  # (N,)
        for p in np.unique(part_of):
            mine = part_of == p
            out[mine] = take_rows(self.parts[p], rows[mine] - self._starts[p])
        return out

    def close(self) -> None:
        for part in self.parts:
            if isinstance(part, FeatureSource):
                part.close()


@dataclass(frozen=True, eq=False)
class CaptionData:
    """One split of a captioning data set in CS231n's COCO layout: one row per caption, images stored once.

    Attributes:
        features: (M, D) pooled or (M, L, D) grid floating-point features of M images, any float dtype: the
            model casts each batch, so a float16 grid stays half the size of a float32 one. An ndarray, or a
            :class:`FeatureSource` that reads rows on demand (close it with :meth:`close` or ``with``).
        captions: (K, T) integer token ids, ``<START> ... <END> <NULL>...``, T >= 2.
        image_idxs: (K,) integers in [0, M): the image of every caption.

    An ndarray's values are checked finite here. A source is not read whole for it (25 GB for COCO's grids):
    the prepared file refuses NaN and infinities when features are written (``Store.write_features``), and the
    model checks every batch it is given (``CaptionModel._check_features``), so damage still shows by row.
    """

    # Typed as the ndarray it usually is: a FeatureSource offers what readers of ``features`` use of one (shape,
    # dtype, ndim, len; H5Rows also row indexing and slices), so code written for arrays runs on streamed splits.
    features: np.ndarray
    captions: np.ndarray
    image_idxs: np.ndarray

    def __post_init__(self) -> None:
        features: Features = self.features if isinstance(self.features, FeatureSource) else np.asarray(self.features)
        captions, image_idxs = np.asarray(self.captions), np.asarray(self.image_idxs)
        if features.ndim not in (2, 3) or features.shape[0] == 0:
            raise ValueError(f"features must have shape (M, D) or (M, L, D) with M >= 1, got {features.shape}")
        if not np.issubdtype(features.dtype, np.floating):
            raise ValueError(f"features must be floating point, got dtype {features.dtype}")
        if isinstance(features, np.ndarray):
            finite = np.isfinite(features).all(axis=tuple(range(1, features.ndim)))  # (M,): one per image
            if not finite.all():
                rows = np.flatnonzero(~finite)
                raise ValueError(f"features hold NaN or infinite values (rows {rows[:10].tolist()})")
        check_caption_ids(captions)
        if image_idxs.shape != (captions.shape[0],):
            raise ValueError(
                f"image_idxs must have shape ({captions.shape[0]},), one per caption, got {image_idxs.shape}"
            )
        if not np.issubdtype(image_idxs.dtype, np.integer):
            raise ValueError(f"image_idxs must be integers, got dtype {image_idxs.dtype}")
        if image_idxs.min() < 0 or image_idxs.max() >= features.shape[0]:
            bad = image_idxs.min() if image_idxs.min() < 0 else image_idxs.max()
            raise ValueError(f"image_idxs holds {bad}, outside [0, {features.shape[0]}) (the rows of features)")
        # The dataclass is frozen so that nobody swaps an array after these checks; set the converted arrays once.
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "captions", captions)
        object.__setattr__(self, "image_idxs", image_idxs)

    def __len__(self) -> int:
        """K, the number of captions."""
        return self.captions.shape[0]

    @property
    def streamed(self) -> bool:
        """True when the features are a :class:`FeatureSource` read on demand, False for an ndarray."""
        return not isinstance(self.features, np.ndarray)

    def close(self) -> None:
        """Close a streamed source (its file); nothing to do for an ndarray."""
        if isinstance(self.features, FeatureSource):
            self.features.close()

    def __enter__(self) -> CaptionData:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_fits(self, feature_shape: tuple[int, ...], vocab_size: int, name: str) -> None:
        """Raise ValueError unless a model that reads ``feature_shape`` per image ((D,) or (L, D)) and knows
        ``vocab_size`` token ids can train on this split; ``name`` (e.g. "train") names it in the message."""
        if self.features.shape[1:] != feature_shape:
            hint = ""
            if self.features.ndim != 1 + len(feature_shape):
                hint = " (an AttentionCaptioner reads grid features, store.load_grid; a CaptioningRNN pooled ones)"
            raise ValueError(
                f"{name} features have shape {self.features.shape}, the model reads "
                f"(M, {', '.join(map(str, feature_shape))}){hint}"
            )
        if self.captions.max() >= vocab_size:
            raise ValueError(
                f"{name} captions hold token id {self.captions.max()}, outside the model's vocabulary [0, {vocab_size})"
            )

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, D) or (N, L, D) and captions (N, T) of the captions ``idx`` (N,)."""
        return take_rows(self.features, self.image_idxs[idx]), self.captions[idx]

    def batches(
        self, order: np.ndarray, batch_size: int, prefetch: int = 1, part: tuple[int, int] = (0, 1)
    ) -> Iterator[Batch]:
        """The minibatches of ``order`` (K',) caption indices, ``batch_size`` at a time, in that order.

        Yields ``(idx, features, captions)``: idx (N,) = ``order[i * batch_size : (i + 1) * batch_size]`` and
        :meth:`batch` of it, the same arrays whatever ``prefetch`` is. With ``prefetch`` > 0 a background thread
        reads up to that many batches ahead while the caller trains on the current one (a streamed source reads
        from disk meanwhile); at most ``prefetch + 2`` batches are in memory. Closing the iterator early (break,
        an exception) stops the thread; an error while reading is raised at the batch it concerns.

        ``part = (rank, world_size)``: only process ``rank``'s block of each batch
        (:func:`rnncap.train.distributed.block`; empty where a short batch has fewer captions than processes), so
        that a data-parallel process reads no feature it does not compute.
        """
        order = np.asarray(order)
        if order.ndim != 1 or not (order.size == 0 or np.issubdtype(order.dtype, np.integer)):
            raise ValueError(f"order must be a 1-D array of caption indices, got shape {order.shape} {order.dtype}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int | np.integer) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative integer (0: no background thread), got {prefetch!r}")
        rank, world_size = part
        if not (is_integer(rank) and is_integer(world_size) and 0 <= rank < world_size):
            raise ValueError(f"part must be (rank, world_size) with 0 <= rank < world_size, got {part!r}")
        slices = [order[start : start + batch_size] for start in range(0, len(order), int(batch_size))]
        if world_size > 1:
            slices = [idx[block(len(idx), rank, world_size)] for idx in slices]
        if prefetch == 0:
            return ((idx, *self.batch(idx)) for idx in slices)
        return read_ahead(lambda idx: (idx, *self.batch(idx)), slices, int(prefetch))


_END = object()


def read_ahead(read: Callable[[Any], Any], items: Sequence[Any], depth: int) -> Iterator[Any]:
    """``read(item)`` for each item, in order, computed by a background thread up to ``depth`` items ahead
    (e.g. a decoder reading the next photos of a streamed split while it searches captions for these).

    A thread suffices: h5py and NumPy's copies and matrix products release the GIL for their work, so reading the
    next batch overlaps the training step (measured in benchmarks/bench_scale.py).
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(value: Any) -> bool:
        while not stop.is_set():  # a bounded wait, so that a consumer that left does not block us forever
            try:
                ready.put(value, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(read(item)):
                    return
        except BaseException as exc:  # handed to the consumer, raised there at the batch that failed
            put(_Failure(exc))
            return
        put(_END)

    thread = threading.Thread(target=work, name="rnncap-prefetch", daemon=True)
    thread.start()
    try:
        while (value := ready.get()) is not _END:
            if isinstance(value, _Failure):
                raise value.exc
            yield value
    finally:
        stop.set()
        thread.join()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException
