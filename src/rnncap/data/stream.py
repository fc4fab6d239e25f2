"""Features streamed from a prepared file: the rows of one split, read from disk as each batch asks for them.

:class:`H5Rows` is the :class:`~rnncap.train.data.FeatureSource` that ``Store.load_split(..., stream=True)``,
``Store.load_grid(..., stream=True)`` and :func:`rnncap.data.open_split` put in a
:class:`~rnncap.train.data.CaptionData`: memory stays at a few batches whatever the data set's size (COCO 2014:
123,287 photos, 25 GB of float16 grids), and the arrays are byte for byte those of the in-memory loaders: grids
float16 as stored (the model casts each batch), pooled features float32 as ``load_split`` returns them.

The features are stored contiguously (``Store.begin_features``): a photo's row is one run of bytes, so a batch of
B photos is B small reads, the rows sorted (HDF5 reads selections in file order), repeats read once. Consecutive
rows (evaluation reads a split in order) are one read.

Lifetime: a source opens its own read-only handle on the file, independent of the :class:`~rnncap.data.Store`
that made it; close it with ``close()`` (or ``CaptionData.close()``, or ``with``). Before each read it checks that
the path still names the file it opened, of the same size: a file removed, replaced or truncated while a run
streams from it is a :class:`~rnncap.data.StoreError` naming the file, not silent zeros (HDF5 reads zeros past
the end of a truncated file) or features of another data set.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from rnncap.data.store_checks import StoreError, damaged


def _identity(path: Path) -> tuple[int, int, int]:
    """What names a file's content cheaply: device, inode and size (an extraction cannot grow a prepared file
    while a reader holds it: HDF5's file locking refuses the writer)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size


class H5Rows:
    """(M_split, ...) rows ``rows`` of the dataset ``key`` of a prepared file, read on demand.

    Args:
        path: the prepared file.
        key: e.g. ``"features/grid"``: a float dataset of (M, ...) rows.
        rows: (M_split,) distinct file rows, in the order this source numbers them (a split's photos in file order).
        dtype: the dtype of the rows returned; None: as stored (float16). The pooled features of a split read as
            float32, as ``load_split`` has them in memory: the same arrays, and the same data fingerprint.
    """

    def __init__(self, path: str | os.PathLike, key: str, rows: np.ndarray, dtype: type | None = None) -> None:
        self.path, self.key = Path(path), key
        self._rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        self._f: h5py.File | None = None
        try:
            self._identity = _identity(self.path)
            self._f = h5py.File(self.path, "r")
        except OSError as e:
            raise StoreError(f"{self.path}: cannot open it to stream {key}: {e}") from e
        if key not in self._f or not isinstance(self._f[key], h5py.Dataset):
            self._f.close()
            raise damaged(self.path, key, "is missing")
        self._ds = self._f[key]
        if self._rows.size and (self._rows.min() < 0 or self._rows.max() >= self._ds.shape[0]):
            self._f.close()
            raise IndexError(f"{self.path}: rows outside the {self._ds.shape[0]} rows of {key}")
        self.shape: tuple[int, ...] = (len(self._rows), *self._ds.shape[1:])
        self.dtype: np.dtype = np.dtype(self._ds.dtype if dtype is None else dtype)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        state = "closed" if self._f is None else "open"
        return f"H5Rows({str(self.path)!r}, {self.key!r}, shape={self.shape}, dtype={self.dtype}, {state})"

    def take(self, rows: np.ndarray) -> np.ndarray:
        """(N, ...) the source's rows ``rows`` (N,) (any order, repeats allowed), as ``dtype``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            bad = int(rows.min() if rows.min() < 0 else rows.max())
            raise IndexError(f"row {bad} is outside the {len(self)} rows streamed from {self.path} {self.key}")
        if rows.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        wanted, inverse = np.unique(self._rows[rows], return_inverse=True)  # sorted, as HDF5 reads them
        block = self._read(wanted).astype(self.dtype, copy=False)
        return block if wanted.size == rows.size and np.array_equal(wanted, self._rows[rows]) else block[inverse]

    def __getitem__(self, key: Any) -> np.ndarray:
        """NumPy-style row indexing (an int, a slice, an integer or boolean array), so that code written for an
        ndarray of features (slicing a split in batches, sampling rows) works on a source unchanged."""
        if isinstance(key, int | np.integer):
            row = np.arange(len(self))[int(key)]  # negative counts from the end; out of range: IndexError
            return self.take(np.array([row]))[0]
        return self.take(np.arange(len(self))[key])

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        """(N, ...) rows ``file_rows`` (N,) sorted and distinct, read from the file after checking it is the same."""
        if self._f is None:
            raise StoreError(f"{self.path}: the features streamed from it ({self.key}) were closed")
        self._check_unchanged()
        first, last = int(file_rows[0]), int(file_rows[-1])
        try:
            if last - first + 1 == file_rows.size:  # consecutive: one contiguous read
                return self._ds[first : last + 1]
            return self._ds[file_rows]
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise StoreError(
                f"{self.path}: reading rows of {self.key} failed while streaming (the file was damaged?): "
                f"{type(e).__name__}: {e}; prepare it again (`rnncap prepare --overwrite`)"
            ) from e

    def _check_unchanged(self) -> None:
        try:
            now = _identity(self.path)
        except OSError as e:
            raise StoreError(
                f"{self.path} was removed or became unreadable while its features were streamed ({e}); "
                "put it back or prepare it again, then resume the run"
            ) from e
        if now[:2] != self._identity[:2]:
            raise StoreError(f"{self.path} was replaced by another file while its features were streamed from it")
        if now[2] != self._identity[2]:
            raise StoreError(
                f"{self.path} changed size while its features were streamed ({self._identity[2]:,} -> {now[2]:,} "
                "bytes): it was truncated or rewritten; prepare it again (`rnncap prepare --overwrite`)"
            )

    def close(self) -> None:
        """Close the file handle; reading afterwards is a StoreError. Closing twice is harmless."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> H5Rows:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown h5py may be half torn down already
            self.close()
