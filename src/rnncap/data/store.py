"""The prepared data file: photos, encoded captions, vocabulary and CNN features in one HDF5 file.

``rnncap prepare`` writes it in two steps, :func:`~rnncap.data.create_store` (records and captions, seconds; in
:mod:`rnncap.data.store_create`) and then the feature extraction through :class:`Store` (hours for COCO,
resumable); the trainer reads a split of it with :func:`load_split` (in memory) or :func:`open_split` (streamed
batch by batch, :mod:`rnncap.data.stream`: any size in bounded memory), evaluation its references with
:func:`load_references`.

Layout (M photos, K captions, T = max_length + 2, F pooled feature size, L grid cells, C grid channels)::

    attrs  format       "rnncap-prepared-1"
           vocab        JSON word_to_idx
           max_length   int, words per caption at most
           encoder      name of the CNN that made the features ("" until extraction begins)
           root         the data set folder the photo paths are relative to ("" if they are absolute)
           name         the data set (e.g. "flickr8k")
           fingerprint  SHA-256 of everything above except encoder, and of every array under images/ and captions/
                        as created: how a re-run recognises its own file
    images/id        (M,)  utf-8 str   the data set's photo id
    images/split     (M,)  utf-8 str   "train", "val", ...
    images/path      (M,)  utf-8 str   relative to attrs root
    images/ok        (M,)  bool        False: the photo could not be read; it is left out of every split
    images/error     (M,)  utf-8 str   why not ("" when ok)
    captions/tokens  (K, T) int32      <START> w... <END> <NULL>...
    captions/image   (K,)  int32       row in images/ of each caption
    captions/raw     (K,)  utf-8 str   the caption as written: the reference for evaluation
    features/done    (M,)  bool        True once the photo's features are written
    features/pooled  (M, F) float16    globally pooled CNN features (created by Store.begin_features)
    features/grid    (M, L, C) float16 optional spatial features, e.g. L = 81 cells of a 9x9 grid, C = 1280

A shard part of a sharded extraction (``create_store(..., shard=(i, n))``) has this layout for its block of the
photos, plus the attributes ``shard``, ``shard_rows`` and ``shard_of`` (:mod:`rnncap.data.store_create`); its
extraction resumes like a whole file's, and :mod:`rnncap.data.store_merge` joins the parts into the whole file.

Opening a file checks every attribute, dataset and index relation above (:mod:`rnncap.data.store_checks`: the
dtypes, the dimensions, M and K agreeing between datasets, captions/image within images/, the vocabulary's
special ids; token ids as a split reads them), so that damage is a :class:`StoreError` naming the field, never an
IndexError or KeyError later on.

Features are float16 to halve the file (COCO's grid features are 25 GB as it is); values beyond float16's range
(65504) are refused rather than stored as infinity.

Crash safety: features are written batch by batch, the batch flushed to disk before its ``done`` flags are set
and flushed, so that an interrupted extraction loses at most the batch in flight and resumes with
``Store.pending()``. HDF5 has no transactions: a crash during a flush can still damage the file, which
:func:`open_store` then reports, and ``create_store(..., overwrite=True)`` starts again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import cast

import h5py
import numpy as np

from rnncap.data.store_checks import (
    StoreError,
    check_caption_image,
    check_image_ids,
    check_layout,
    check_tokens,
    read_attrs,
)
from rnncap.data.stream import H5Rows
from rnncap.train.data import CaptionData

FORMAT = "rnncap-prepared-1"
_F16_MAX = float(np.finfo(np.float16).max)
_BLOCK_BYTES = 64 << 20  # features read 64 MiB at a time: memory stays bounded on COCO's 123k photos


def open_store(path: str | os.PathLike, writable: bool = False, root: str | os.PathLike | None = None) -> Store:
    """Open a prepared file (read-only unless ``writable``); ``root`` overrides the stored data set folder."""
    return Store(path, writable=writable, root=root)


class Store:
    """An open prepared file: its vocabulary and photos, and the feature extraction's progress.

    Use as a context manager, or call :meth:`close`. The extraction loop::

        with open_store("flickr8k.h5", writable=True) as store:
            store.begin_features("efficientnet-lite0", pooled_dim=1280)
            todo = store.pending()
            for batch in np.array_split(todo, max(1, len(todo) // 64)):
                ...  # read store.image_paths(batch); mark_failed() the unreadable ones, run the CNN on the rest
                store.write_features(good, pooled)
    """

    def __init__(self, path: str | os.PathLike, writable: bool = False, root: str | os.PathLike | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"prepared file {self.path} not found; create it with `rnncap prepare`")
        try:
            self._f = h5py.File(self.path, "r+" if writable else "r")
        except OSError as e:
            raise StoreError(
                f"{self.path} is not a readable HDF5 file (damaged, another format, or open for writing elsewhere): {e}"
            ) from e
        try:
            if self._f.attrs.get("format") != FORMAT:
                raise StoreError(
                    f"{self.path} is not an rnncap prepared file (format {self._f.attrs.get('format')!r}, "
                    f"expected {FORMAT!r})"
                )
            # Every attribute, dataset and index relation checked once here: the readers below trust them.
            self.word_to_idx, self.max_length = read_attrs(self.path, self._f)
            check_layout(self.path, self._f, self.max_length)
            stored_root = str(self._f.attrs["root"])
            self.root = Path(root) if root is not None else (Path(stored_root) if stored_root else None)
            self.name = str(self._f.attrs["name"])
            self.image_ids: list[str] = list(self._f["images/id"].asstr()[()])
            check_image_ids(self.path, self.image_ids)
            self._split = self._f["images/split"].asstr()[()].astype(str)
            self._caption_image = check_caption_image(self.path, self._f["captions/image"][()], self.num_images)
        except StoreError:
            self._f.close()
            raise
        except (KeyError, ValueError, TypeError, OSError) as e:  # what the checks above did not foresee
            self._f.close()
            raise StoreError(f"{self.path} is damaged or incomplete: {type(e).__name__}: {e}") from e

    # ---- context manager -------------------------------------------------------------------------------------

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- what is in it ---------------------------------------------------------------------------------------

    @property
    def encoder(self) -> str:
        """The name given to :meth:`begin_features` ("" before)."""
        return str(self._f.attrs["encoder"])

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    def image_paths(self, indices: Sequence[int] | np.ndarray | None = None) -> list[Path]:
        """Where the photos at ``indices`` (default all) are: the stored relative paths joined to the root."""
        chosen = self._paths if indices is None else self._paths[self._check_indices(indices)]
        return [self.root / p if self.root is not None else Path(p) for p in chosen]

    def _check_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """(B,) photo indices as int64, refused unless each is a row of images/ (IndexError, as for a list)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_images):
            bad = int(idx.min() if idx.min() < 0 else idx.max())
            raise IndexError(f"{self.path}: photo index {bad} is outside the {self.num_images} photos of images/")
        return idx

    @cached_property
    def _paths(self) -> np.ndarray:
        """(M,) the stored relative paths, read once: an extraction asks for them batch after batch."""
        return self._f["images/path"].asstr()[()]

    def splits(self) -> dict[str, dict[str, int]]:
        """Per split: ``images``, ``captions``, ``done`` (features written) and ``failed`` (unreadable photos)."""
        ok, done = self._f["images/ok"][()], self._f["features/done"][()]
        per_caption = self._split[self._caption_image]
        out = {}
        for split in dict.fromkeys(self._split.tolist()):
            mine = self._split == split
            out[split] = {
                "images": int(mine.sum()),
                "captions": int((per_caption == split).sum()),
                "done": int((mine & done).sum()),
                "failed": int((mine & ~ok).sum()),
            }
        return out

    def summary(self) -> str:
        """One line for printing: photos per split, captions, vocabulary, extraction progress."""
        counts = self.splits()
        images = ", ".join(f"{s} {c['images']:,}" for s, c in counts.items())
        done = sum(c["done"] for c in counts.values())
        failed = sum(c["failed"] for c in counts.values())
        return (
            f"{self.path.name}: {self.name or 'data'}, {self.num_images:,} images ({images}), "
            f"{sum(c['captions'] for c in counts.values()):,} captions, vocabulary {len(self.word_to_idx):,} words, "
            f"features {done:,}/{self.num_images - failed:,} done ({self.encoder or 'no encoder yet'}), "
            f"{failed:,} unreadable"
        )

    # ---- feature extraction ----------------------------------------------------------------------------------

    def pending(self) -> np.ndarray:
        """(P,) int64 sorted indices of the readable photos whose features are not written yet."""
        return np.flatnonzero(self._f["images/ok"][()] & ~self._f["features/done"][()])

    def begin_features(
        self, encoder: str, pooled_dim: int, grid_shape: tuple[int, int] | None = None, restart: bool = False
    ) -> None:
        """Make room for features of ``encoder``: (M, pooled_dim) and, with ``grid_shape`` (L, C), (M, L, C).

        Called again with the same arguments it does nothing, so that an interrupted extraction continues. A
        different encoder or shape is refused unless ``restart``, which drops every feature and failure mark.
        """
        self._require_writable()
        M = self.num_images
        feats = self._f["features"]
        wanted: dict[str, tuple[int, ...]] = {"pooled": (M, int(pooled_dim))}
        if grid_shape is not None:
            wanted["grid"] = (M, *map(int, grid_shape))
        current = {key: feats[key].shape for key in ("pooled", "grid") if key in feats}
        if current == wanted and self.encoder == encoder:
            return
        if current and not restart:
            raise StoreError(
                f"{self.path} holds features of {self.encoder!r} with shapes {current}; asked for {encoder!r} with "
                f"{wanted}: pass restart=True (CLI: --overwrite) to drop them and extract again"
            )
        for key in current:
            del feats[key]  # HDF5 does not reclaim the space until the file is repacked; a restart is rare
        # Contiguous layout: fixed-size rows written in place, no chunk cache to tune, and each photo's row one run
        # of bytes, which a streamed batch (rnncap.data.stream) reads in one piece.
        for key, shape in wanted.items():
            feats.create_dataset(key, shape=shape, dtype=np.float16)
        feats["done"][...] = False
        self._f["images/ok"][...] = True
        self._f["images/error"][...] = ""
        self._f.attrs["encoder"] = encoder
        self._f.flush()

    def write_features(
        self, indices: Sequence[int] | np.ndarray, pooled: np.ndarray, grid: np.ndarray | None = None
    ) -> None:
        """Store the features of the photos at ``indices`` and mark them done (flushed to disk first).

        Args:
            indices: (B,) distinct photo indices.
            pooled: (B, F) features, any float dtype; stored as float16.
            grid: (B, L, C) features, required exactly when the store was begun with a grid shape.
        """
        self._require_writable()
        feats = self._f["features"]
        if "pooled" not in feats:
            raise StoreError(f"{self.path}: call begin_features(encoder, pooled_dim, ...) before write_features")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        B = idx.size
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_images):
            raise IndexError(f"photo indices must be in [0, {self.num_images}), got {idx.min()}..{idx.max()}")
        if np.unique(idx).size != B:
            raise ValueError("photo indices must be distinct")
        arrays = {"pooled": np.asarray(pooled)}
        if grid is not None:
            arrays["grid"] = np.asarray(grid)
        if set(arrays) != {key for key in ("pooled", "grid") if key in feats}:
            raise ValueError(
                f"{self.path} stores {'grid features: pass grid' if 'grid' in feats else 'no grid: drop grid'}"
            )
        for key, array in arrays.items():
            expected = (B, *feats[key].shape[1:])
            if array.shape != expected:
                raise ValueError(f"{key} features must have shape {expected}, got {array.shape}")
            self._check_float16(key, array, idx)
        if B == 0:
            return
        order = np.argsort(idx)  # write each run of consecutive indices as one slice: no fancy indexing in h5py
        idx = idx[order]
        runs = np.split(np.arange(B), np.flatnonzero(np.diff(idx) != 1) + 1)
        slices = [slice(int(idx[run[0]]), int(idx[run[-1]]) + 1) for run in runs]
        for run, rows in zip(runs, slices, strict=True):
            for key, array in arrays.items():
                feats[key][rows] = array[order[run]].astype(np.float16)
        self._f.flush()  # the features reach the disk before the flags that vouch for them
        for rows in slices:
            feats["done"][rows] = True
        self._f.flush()

    def mark_failed(self, index: int, error: str) -> None:
        """Record that photo ``index`` could not be read (e.g. not an image); it leaves pending() and every split."""
        self._require_writable()
        if not 0 <= int(index) < self.num_images:
            raise IndexError(f"photo index must be in [0, {self.num_images}), got {index}")
        self._f["images/ok"][int(index)] = False
        self._f["images/error"][int(index)] = str(error) or "unreadable"
        self._f.flush()

    def failures(self) -> dict[str, str]:
        """``{image_id: error}`` of the photos marked failed."""
        bad = np.flatnonzero(~self._f["images/ok"][()])
        errors = self._f["images/error"].asstr()[()]
        return {self.image_ids[i]: errors[i] for i in bad}

    def _require_writable(self) -> None:
        if self._f.mode != "r+":
            raise StoreError(f"{self.path} is open read-only: open_store(path, writable=True) to write features")

    def _check_float16(self, key: str, array: np.ndarray, idx: np.ndarray) -> None:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{key} features must be floating point, got dtype {array.dtype}")
        rows = array.reshape(array.shape[0], -1)
        bad = ~np.isfinite(rows).all(axis=1) | (np.abs(rows).max(axis=1, initial=0.0) > _F16_MAX)
        if bad.any():
            names = [self.image_ids[i] for i in idx[bad][:5]]
            raise ValueError(
                f"{key} features of {bad.sum()} photo(s) (e.g. {names}) are NaN, infinite or beyond float16's range "
                f"(|x| <= {_F16_MAX:g}); they cannot be stored as float16"
            )

    # ---- reading splits --------------------------------------------------------------------------------------

    def _select(self, split: str, allow_partial: bool) -> np.ndarray:
        """(M,) bool: the photos of ``split`` that are readable and have features; errors say what is missing."""
        if split not in set(self._split.tolist()):
            raise StoreError(
                f"{self.path} has no split {split!r} (splits: {list(dict.fromkeys(self._split.tolist()))})"
            )
        if "pooled" not in self._f["features"]:
            raise StoreError(f"{self.path} has no features yet: extract them first (`rnncap prepare` does)")
        mine = (self._split == split) & self._f["images/ok"][()]
        done = self._f["features/done"][()]
        waiting = int((mine & ~done).sum())
        if waiting and not allow_partial:
            raise StoreError(
                f"{self.path}: {waiting} of {int(mine.sum())} readable photos of split {split!r} have no features "
                "yet; resume the extraction (run `rnncap prepare` again) or pass allow_partial=True"
            )
        selected = mine & done
        if not selected.any():
            raise StoreError(f"{self.path}: split {split!r} has no photo with features")
        return selected

    def _read_rows(self, key: str, selected: np.ndarray, dtype: type) -> np.ndarray:
        """The rows of features/``key`` where ``selected``, as ``dtype``, read block by block into one array
        allocated once (no concatenation: the split is in memory once, plus one block)."""
        ds = self._f["features"][key]
        step = max(1, _BLOCK_BYTES // (ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
        out = np.empty((int(selected.sum()), *ds.shape[1:]), dtype=dtype)
        row = 0
        for start in range(0, ds.shape[0], step):
            mine = selected[start : start + step]
            if mine.any():
                block = ds[start : start + step][mine]
                out[row : row + len(block)] = block
                row += len(block)
        return out

    def _require(self, key: str) -> None:
        if key not in self._f["features"]:
            raise StoreError(f"{self.path} holds no {key} features (extracted without a {key})")

    def load_split(self, split: str, allow_partial: bool = False, stream: bool = False) -> CaptionData:
        """See :func:`load_split`."""
        return self._caption_data(split, allow_partial, "pooled", stream)

    def open_split(self, split: str, grid: bool = False, allow_partial: bool = False) -> CaptionData:
        """See :func:`open_split`."""
        return self._caption_data(split, allow_partial, "grid" if grid else "pooled", stream=True)

    def _caption_data(self, split: str, allow_partial: bool, key: str, stream: bool) -> CaptionData:
        selected = self._select(split, allow_partial)
        caption_image = self._caption_image
        keep = selected[caption_image]
        new_row = np.cumsum(selected) - 1  # photo index -> row in this split's features
        tokens = check_tokens(self.path, self._f["captions/tokens"][()][keep], max(self.word_to_idx.values()) + 1)
        self._require(key)
        dtype = np.float32 if key == "pooled" else np.float16  # a grid stays half size: the model casts per batch
        if not stream:
            features = self._read_rows(key, selected, dtype)
            return CaptionData(features=features, captions=tokens, image_idxs=new_row[caption_image[keep]])
        with contextlib.ExitStack() as closing:  # the file closed again if the split is refused
            source = closing.enter_context(H5Rows(self.path, f"features/{key}", np.flatnonzero(selected), dtype))
            # A source stands where CaptionData types an ndarray (see CaptionData.features).
            data = CaptionData(cast(np.ndarray, source), tokens, new_row[caption_image[keep]])
            closing.pop_all()
        return data

    def load_grid(self, split: str, allow_partial: bool = False) -> np.ndarray:
        """See :func:`load_grid`."""
        selected = self._select(split, allow_partial)
        self._require("grid")
        return self._read_rows("grid", selected, np.float16)

    def load_references(self, split: str, allow_partial: bool = False) -> dict[str, list[str]]:
        """See :func:`load_references`."""
        selected = self._select(split, allow_partial)
        caption_image = self._caption_image
        raw = self._f["captions/raw"].asstr()[()]
        refs: dict[str, list[str]] = {self.image_ids[i]: [] for i in np.flatnonzero(selected)}
        for caption, image in zip(raw[selected[caption_image]], caption_image[selected[caption_image]], strict=True):
            refs[self.image_ids[image]].append(caption)
        return refs


def load_split(path: str | os.PathLike, split: str, allow_partial: bool = False, stream: bool = False) -> CaptionData:
    """One split as the trainer takes it.

    Args:
        path: the prepared file.
        split: e.g. ``"train"``.
        allow_partial: use the photos extracted so far instead of refusing while some are pending.
        stream: leave the features in the file (an :class:`~rnncap.data.stream.H5Rows`, read batch by batch;
            close it with ``CaptionData.close()`` or ``with``) instead of reading them whole.

    Returns:
        CaptionData with features (M_split, F) float32 (the readable photos of the split whose features are
        written, in file order), captions (K_split, T) int32, image_idxs (K_split,) rows of those features.
    """
    with open_store(path) as store:
        return store.load_split(split, allow_partial, stream)


def open_split(path: str | os.PathLike, split: str, grid: bool = False, allow_partial: bool = False) -> CaptionData:
    """One split with its pooled (or, with ``grid``, its grid) features streamed from the file: memory bounded
    whatever the split's size. The source holds the file open until ``CaptionData.close()`` (or ``with``)::

        with open_split("coco.h5", "train", grid=True) as train:
            for idx, features, captions in train.batches(order, batch_size=128):
                ...
    """
    with open_store(path) as store:
        return store.open_split(split, grid, allow_partial)


def load_grid(path: str | os.PathLike, split: str, allow_partial: bool = False) -> np.ndarray:
    """(M_split, L, C) float16 grid features of a split, row for row those of :func:`load_split`.

    Separate from :func:`load_split` because only attention models read it (``CaptionData(grid,
    split.captions, split.image_idxs)`` trains one), and kept float16 because a split's grid is large (Flickr8k
    train: 1.2 GB as float16; the trainer keeps it so and the model casts each batch). :func:`open_split` with
    ``grid=True`` leaves it in the file instead, read batch by batch.
    """
    with open_store(path) as store:
        return store.load_grid(split, allow_partial)


def load_references(path: str | os.PathLike, split: str, allow_partial: bool = False) -> dict[str, list[str]]:
    """``{image_id: [raw captions]}`` of a split, keys in the order of :func:`load_split`'s feature rows."""
    with open_store(path) as store:
        return store.load_references(split, allow_partial)
