"""Putting the parts of a sharded extraction back together: :func:`merge_shards` writes, from the parts that
``create_store(..., shard=(i, n))`` began and the extraction filled, the very file the unsharded preparation
writes: the same datasets, rows in the same order, the same feature bytes and the same attributes.

Nothing is written until the parts have passed every check, each failure a :class:`StoreError` that names the part
and what is wrong:

- every part opens as a prepared file (:func:`~rnncap.data.open_store`'s checks) and is a shard part, unchanged
  since it was cut (its own fingerprint);
- all are shards of one count n, and each index 0..n-1 is given exactly once;
- they belong together: the same data set folder and name, ``max_length`` and vocabulary, cut from the same whole
  store (the ``shard_of`` fingerprint), features of the same encoder with the same shapes;
- every part is complete: each photo has its features or is marked unreadable;
- joined, their photos and captions are the whole store they were cut from (its fingerprint again).

The merged file is written under a temporary name and renamed into place once complete, like every store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from rnncap.data.store import Store, StoreError, open_store
from rnncap.data.store_create import Shard, StoreContents
from rnncap.files import replacing

_COPY_BYTES = 64 << 20  # features copied 64 MiB at a time: memory stays bounded whatever the parts' size


@dataclass(frozen=True)
class MergeResult:
    """What :func:`merge_shards` did, for printing.

    Attributes:
        path: the merged file.
        summary: its :meth:`~rnncap.data.Store.summary` line.
        parts: how many parts went into it.
        seconds: wall time of the merge.
    """

    path: Path
    summary: str
    parts: int
    seconds: float


@dataclass(frozen=True, eq=False)
class _Part:
    """One part file as the checks see it."""

    path: Path
    contents: StoreContents
    shard: Shard
    encoder: str  # "" until its extraction began
    shapes: dict[str, tuple[int, ...]]  # per feature dataset, its shape but the photo dimension: pooled (F,), grid
    pending: int  # readable photos still without features


def merge_shards(
    out: str | os.PathLike, parts: Sequence[str | os.PathLike], *, overwrite: bool = False, progress: bool = True
) -> MergeResult:
    """Write the whole prepared file ``out`` from the part files of every shard of one sharded extraction.

    Args:
        out: the file to write.
        parts: one file per shard, in any order.
        overwrite: replace an existing ``out``.
        progress: show a progress bar of the photos copied.

    Raises:
        StoreError: a part that is damaged, no part, not a part, missing, given twice, incomplete or of another
            extraction; an existing ``out`` without ``overwrite``.
    """
    start = time.perf_counter()
    out = Path(out)
    ordered = _check_parts([_read_part(Path(path)) for path in parts])
    whole = StoreContents.joined([part.contents for part in ordered])
    if whole.fingerprint != ordered[0].shard.whole:
        raise StoreError(
            f"the parts {', '.join(str(part.path) for part in ordered)} do not join into the store they were cut "
            "from (its fingerprint differs): prepare the shards again"
        )
    if out.exists() and not overwrite:
        raise StoreError(f"{out} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    first = ordered[0]
    with replacing(out) as tmp:
        with h5py.File(tmp, "w") as f:
            whole.write_into(f)
        with open_store(tmp, writable=True) as store:
            # The unsharded extraction's own calls, so that the features are laid out as it lays them out.
            grid = first.shapes.get("grid")  # (L, C), checked by open_store to be two dimensions
            store.begin_features(first.encoder, first.shapes["pooled"][0], None if grid is None else (grid[0], grid[1]))
            with tqdm(total=whole.num_images, unit="img", desc="merging shards", disable=not progress) as bar:
                for part in ordered:
                    _copy_features(part, store, bar)
    with open_store(out) as merged:
        summary = merged.summary()
    return MergeResult(out, summary, len(ordered), time.perf_counter() - start)


def _read_part(path: Path) -> _Part:
    """A part file's contents, shard, encoder, feature shapes and progress, after open_store's checks."""
    with open_store(path) as store:  # every layout check, and a clear error for a missing or damaged file
        encoder, pending = store.encoder, int(store.pending().size)
    with h5py.File(path, "r") as f:
        contents = StoreContents.read(f)
        shapes = {key: tuple(f["features"][key].shape[1:]) for key in ("pooled", "grid") if key in f["features"]}
        stored = str(f.attrs["fingerprint"])
    if contents.shard is None:
        raise StoreError(
            f"{path} is a whole prepared file, not a shard part: merge the files that `rnncap prepare ... "
            "--shard i/n` wrote"
        )
    if contents.fingerprint != stored:
        raise StoreError(
            f"{path} is damaged: its photos, captions or shard attributes changed after it was cut (its "
            f"fingerprint differs); prepare shard {contents.shard} again (`--overwrite`)"
        )
    return _Part(path, contents, contents.shard, encoder, shapes, pending)


def _check_parts(parts: list[_Part]) -> list[_Part]:
    """The parts in shard order, once they are shown to be every shard of one complete extraction."""
    if not parts:
        raise StoreError("no part files to merge: give the file of every shard")
    first = parts[0]
    count = first.shard.count
    by_index: dict[int, _Part] = {}
    for part in parts:
        if part.shard.count != count:
            raise StoreError(
                f"{part.path} is shard {part.shard} but {first.path} is shard {first.shard}: the parts of one "
                "extraction are shards of the same count"
            )
        if part.shard.index in by_index:
            raise StoreError(f"shard {part.shard} is given twice: {by_index[part.shard.index].path} and {part.path}")
        by_index[part.shard.index] = part
    missing = [f"{index}/{count}" for index in range(count) if index not in by_index]
    if missing:
        raise StoreError(
            f"shard {', '.join(missing)} missing: give the part of every shard 0..{count - 1} (given: "
            f"{', '.join(str(part.path) for part in parts)})"
        )
    ordered = [by_index[index] for index in range(count)]
    first = ordered[0]
    for part in ordered:  # the first part is found complete before any other part's features are compared to it
        _refuse_differences(part, first, _data_differences(part, first))
        _check_complete(part)
        _refuse_differences(part, first, _feature_differences(part, first))
    return ordered


def _data_differences(part: _Part, first: _Part) -> list[str]:
    """What in the data and settings of ``part`` differs from ``first``, in words (empty: nothing)."""
    a, b = part.contents, first.contents
    checks = [
        (a.root != b.root, f"the data set folder {a.root or '(absolute paths)'!r} vs {b.root or '(absolute paths)'!r}"),
        (a.name != b.name, f"the data set {a.name!r} vs {b.name!r}"),
        (a.max_length != b.max_length, f"--max-length {a.max_length} vs {b.max_length}"),
        (a.vocab != b.vocab, "the vocabulary (another --min-count or --vocab, or other train captions)"),
        (
            part.shard.whole != first.shard.whole,
            "the preparation they were cut from (other photos, captions or splits of the data set)",
        ),
    ]
    return [what for differs, what in checks if differs]


def _feature_differences(part: _Part, first: _Part) -> list[str]:
    """What in the features of ``part`` differs from ``first``, in words (empty: nothing)."""
    checks = [
        (part.encoder != first.encoder, f"the encoder {part.encoder!r} vs {first.encoder!r}"),
        (part.shapes != first.shapes, f"the feature shapes {part.shapes} vs {first.shapes} (--no-grid?)"),
    ]
    return [what for differs, what in checks if differs]


def _refuse_differences(part: _Part, first: _Part, differences: list[str]) -> None:
    if differences:
        raise StoreError(
            f"{part.path} (shard {part.shard}) and {first.path} (shard {first.shard}) are not parts of one "
            f"extraction: they differ in {'; and in '.join(differences)}"
        )


def _check_complete(part: _Part) -> None:
    """Refuse a part whose extraction has not begun or not finished."""
    if not part.encoder or part.pending:
        waiting = part.contents.num_images if not part.encoder else part.pending
        raise StoreError(
            f"{part.path} (shard {part.shard}) is incomplete: {waiting:,} of its {part.contents.num_images:,} photos "
            f"have no features yet; finish it by running its `rnncap prepare ... --shard {part.shard}` again"
        )


def _copy_features(part: _Part, store: Store, bar: tqdm) -> None:
    """Copy a part's feature rows and unreadable-photo marks into the whole store, block by block."""
    offset = part.shard.start
    with h5py.File(part.path, "r") as f:
        features = f["features"]
        done, ok = features["done"][()], f["images/ok"][()]
        errors = f["images/error"].asstr()[()]
        for row in np.flatnonzero(~ok):
            store.mark_failed(offset + int(row), errors[row])
        row_bytes = sum(features[key].dtype.itemsize * int(np.prod(shape)) for key, shape in part.shapes.items())
        step = max(1, _COPY_BYTES // row_bytes)
        for begin in range(0, part.contents.num_images, step):
            block = slice(begin, begin + step)
            written = done[block]
            if written.any():
                arrays = {key: features[key][block][written] for key in part.shapes}
                rows = offset + begin + np.flatnonzero(written)
                store.write_features(rows, arrays["pooled"], arrays.get("grid"))
            bar.update(len(written))
