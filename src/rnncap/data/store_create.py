"""Creating a prepared data file (its layout: :mod:`rnncap.data.store`): the input checks, the fingerprint by which
a re-run recognises its own file, the write, and the cutting of a preparation into shards.

The file is written under a temporary name and renamed into place, so a crash never leaves half a store; the
feature extraction then fills it through :class:`~rnncap.data.store.Store`.

Sharded extraction: ``create_store(..., shard=(i, n))`` writes part ``i`` of ``n`` instead of the whole store: the
photos of rows :func:`shard_rows` of the whole store, their captions, the whole vocabulary, and three attributes
that tie the part to the whole (the extraction of a part resumes like that of a whole file)::

    attrs  shard        "i/n"
           shard_rows   [start, stop]: the part's photos are rows start..stop-1 of the whole store
           shard_of     the fingerprint of the whole store the part was cut from

:func:`rnncap.data.store_merge.merge_shards` puts the parts back together into the file the unsharded run writes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from rnncap.data.records import ImageRecord
from rnncap.data.store import FORMAT, StoreError
from rnncap.files import replacing
from rnncap.text import check_caption_ids, check_special_ids

_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class Shard:
    """Which part of a whole store a shard file holds.

    Attributes:
        index: the shard, 0 <= index < count.
        count: how many shards the whole store is cut into.
        start, stop: its photos are rows start..stop-1 of the whole store (contiguous blocks, see
            :func:`shard_rows`).
        whole: the fingerprint of the whole store.
    """

    index: int
    count: int
    start: int
    stop: int
    whole: str

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True, eq=False)
class StoreContents:
    """What :func:`create_store` writes before any feature (M photos, K captions, T = max_length + 2): the
    attributes a prepared file is recognised by and its image and caption columns.

    Attributes:
        vocab: the vocabulary, JSON of word_to_idx with sorted keys.
        max_length: words per caption at most.
        root: the data set folder the photo paths are relative to ("" if they are absolute).
        name: the data set's name.
        ids, splits, paths: (M,) the images/ columns.
        tokens: (K, T) int32 encoded captions.
        caption_image: (K,) int32 the photo row of each caption.
        raw: (K,) the captions as written.
        shard: which part of a whole store this is; None for a whole store.
    """

    vocab: str
    max_length: int
    root: str
    name: str
    ids: list[str]
    splits: list[str]
    paths: list[str]
    tokens: np.ndarray
    caption_image: np.ndarray
    raw: list[str]
    shard: Shard | None = None

    @classmethod
    def from_records(
        cls,
        records: Iterable[ImageRecord],
        word_to_idx: Mapping[str, int],
        tokens: np.ndarray,
        caption_image: np.ndarray,
        raw_captions: Sequence[str],
        *,
        root: str | os.PathLike | None = None,
        name: str = "",
    ) -> StoreContents:
        """The contents of a whole store of these records and captions (the arguments of :func:`create_store`),
        checked."""
        records = list(records)
        tokens, caption_image = np.asarray(tokens), np.asarray(caption_image)
        _check_inputs(records, word_to_idx, tokens, caption_image, raw_captions)
        root_str = "" if root is None else os.path.abspath(root)
        return cls(
            vocab=json.dumps(dict(word_to_idx), sort_keys=True, ensure_ascii=False),
            max_length=tokens.shape[1] - 2,
            root=root_str,
            name=name,
            ids=[r.image_id for r in records],
            splits=[r.split for r in records],
            paths=[_relative(r.path, root_str) for r in records],
            tokens=tokens.astype(np.int32, copy=False),
            caption_image=caption_image.astype(np.int32, copy=False),
            raw=list(raw_captions),
        )

    @classmethod
    def read(cls, f: h5py.File) -> StoreContents:
        """The contents of an open prepared file (checked by :func:`~rnncap.data.open_store` first), its shard
        attributes included.

        Raises:
            StoreError: shard attributes that are incomplete or malformed.
        """
        return cls(
            vocab=str(f.attrs["vocab"]),
            max_length=int(f.attrs["max_length"]),
            root=str(f.attrs["root"]),
            name=str(f.attrs["name"]),
            ids=list(f["images/id"].asstr()[()]),
            splits=list(f["images/split"].asstr()[()]),
            paths=list(f["images/path"].asstr()[()]),
            tokens=f["captions/tokens"][()].astype(np.int32, copy=False),
            caption_image=f["captions/image"][()].astype(np.int32, copy=False),
            raw=list(f["captions/raw"].asstr()[()]),
            shard=_read_shard(f),
        )

    @property
    def num_images(self) -> int:
        return len(self.ids)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the attributes and columns (and, for a part, of which shard of which whole store it is)."""
        attrs = [self.vocab, str(self.max_length), self.root, self.name]
        if self.shard is not None:
            attrs += [str(self.shard), f"{self.shard.start}:{self.shard.stop}", self.shard.whole]
        strings = [self.ids, self.splits, self.paths, self.raw]
        return _fingerprint(attrs, strings, [self.tokens, self.caption_image])

    def part(self, index: int, count: int) -> StoreContents:
        """Shard ``index`` of ``count`` of this whole store: the photos of rows :func:`shard_rows` and their
        captions, the vocabulary and the attributes unchanged.

        Raises:
            ValueError: a bad shard, more shards than photos, or captions not in photo order (the order
                :func:`~rnncap.data.prepare_records` gives them, which makes each part's captions one block).
        """
        if self.shard is not None:
            raise ValueError(f"shard {self.shard} of a store cannot be cut into shards again")
        start, stop = shard_rows(self.num_images, index, count)
        if np.any(np.diff(self.caption_image) < 0):
            raise ValueError("sharding needs the captions in photo order (as prepare_records gives them)")
        first, last = np.searchsorted(self.caption_image, [start, stop])  # this block's captions: rows first..last-1
        return replace(
            self,
            ids=self.ids[start:stop],
            splits=self.splits[start:stop],
            paths=self.paths[start:stop],
            tokens=self.tokens[first:last],
            caption_image=self.caption_image[first:last] - start,
            raw=self.raw[first:last],
            shard=Shard(index, count, start, stop, self.fingerprint),
        )

    @classmethod
    def joined(cls, parts: Sequence[StoreContents]) -> StoreContents:
        """The whole store of ``parts``, given in shard order (each row block after the one before): photos and
        captions concatenated, caption rows shifted to the whole store's photo rows, no shard."""
        offsets = np.cumsum([0, *(part.num_images for part in parts[:-1])])
        return replace(
            parts[0],
            ids=[i for part in parts for i in part.ids],
            splits=[s for part in parts for s in part.splits],
            paths=[p for part in parts for p in part.paths],
            tokens=np.concatenate([part.tokens for part in parts]),
            caption_image=np.concatenate(
                [part.caption_image + offset for part, offset in zip(parts, offsets, strict=True)]
            ).astype(np.int32),
            raw=[r for part in parts for r in part.raw],
            shard=None,
        )

    def write_into(self, f: h5py.File) -> None:
        """Write the attributes and datasets of :mod:`rnncap.data.store`'s layout into a new, empty file: every
        photo readable, no features begun (``encoder`` "")."""
        M = self.num_images
        attrs: dict[str, object] = {"format": FORMAT, "vocab": self.vocab, "max_length": self.max_length}
        attrs |= {"encoder": "", "root": self.root, "name": self.name, "fingerprint": self.fingerprint}
        if self.shard is not None:
            attrs |= {"shard": str(self.shard), "shard_of": self.shard.whole}
            attrs["shard_rows"] = np.array([self.shard.start, self.shard.stop], dtype=np.int64)
        f.attrs.update(attrs)
        for key, column in (("id", self.ids), ("split", self.splits), ("path", self.paths)):
            f.create_dataset(f"images/{key}", data=column, dtype=_STR)
        f.create_dataset("images/ok", data=np.ones(M, dtype=bool))
        f.create_dataset("images/error", data=[""] * M, dtype=_STR)
        f.create_dataset("captions/tokens", data=self.tokens)
        f.create_dataset("captions/image", data=self.caption_image)
        f.create_dataset("captions/raw", data=self.raw, dtype=_STR)
        f.create_dataset("features/done", data=np.zeros(M, dtype=bool))


def shard_rows(num_images: int, index: int, count: int) -> tuple[int, int]:
    """``(start, stop)``: shard ``index`` of ``count`` holds photo rows start..stop-1 of the whole store.

    Contiguous blocks whose sizes differ by at most one, so that every photo is in exactly one shard, each shard
    is one run of rows of the whole store (the merge copies each part with one slice), and each part is a slice
    of the data set's own order.

    Raises:
        ValueError: ``count`` < 1, ``index`` outside 0..count-1, or more shards than photos.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected i/n with n >= 1 and 0 <= i < n (e.g. 0/2 and 1/2)")
    if count > num_images:
        raise ValueError(f"shard {index}/{count}: {count} shards of {num_images} photo(s) would leave some empty")
    return index * num_images // count, (index + 1) * num_images // count


def create_store(
    path: str | os.PathLike,
    records: Iterable[ImageRecord],
    word_to_idx: Mapping[str, int],
    tokens: np.ndarray,
    caption_image: np.ndarray,
    raw_captions: Sequence[str],
    *,
    root: str | os.PathLike | None = None,
    name: str = "",
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
) -> bool:
    """Write a new prepared file, or recognise an identical one so that its extraction continues.

    Args:
        path: the file to write.
        records: the M photos (a :class:`~rnncap.data.Dataset` works); ids must be unique.
        word_to_idx: the vocabulary.
        tokens: (K, T) int32 encoded captions, T >= 3.
        caption_image: (K,) the record index of each caption.
        raw_captions: the K captions as written.
        root: store photo paths relative to this folder (normally ``dataset.root``); None: absolute paths.
        name: the data set's name, kept in the file for summaries.
        overwrite: replace an existing file that holds something else (its features are lost).
        shard: ``(i, n)``: write only part ``i`` of ``n`` of this store (:meth:`StoreContents.part`), to be put
            together with the others by :func:`rnncap.data.store_merge.merge_shards`.

    Returns:
        True if the file was written; False if ``path`` already held exactly this data (features kept).

    The new file is written under a temporary name and renamed into place, so a crash never leaves half a store.
    """
    path = Path(path)
    contents = StoreContents.from_records(
        records, word_to_idx, tokens, caption_image, raw_captions, root=root, name=name
    )
    if shard is not None:
        contents = contents.part(*shard)
    if path.exists() and not overwrite:
        existing = stored_fingerprint(path)
        if existing == contents.fingerprint:
            return False
        raise StoreError(
            f"{path} already exists and holds {'other data' if existing else 'no rnncap prepared data'}; "
            "pass overwrite=True (CLI: --overwrite) to replace it (its features are lost), or choose another file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        contents.write_into(f)
    return True


def stored_fingerprint(path: str | os.PathLike) -> str | None:
    """The fingerprint of an existing prepared file, None if the file is not one."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["fingerprint"]) if f.attrs.get("format") == FORMAT else None
    except (OSError, KeyError):
        return None


def _read_shard(f: h5py.File) -> Shard | None:
    """The shard attributes of an open prepared file; None when it has none (a whole store)."""
    keys = ("shard", "shard_rows", "shard_of")
    if not any(key in f.attrs for key in keys):
        return None
    where = f"{f.filename} is damaged or incomplete: its shard attributes"
    if not all(key in f.attrs for key in keys):
        raise StoreError(f"{where} must be all of {keys}, found {sorted(k for k in keys if k in f.attrs)}")
    text, rows = str(f.attrs["shard"]), np.asarray(f.attrs["shard_rows"])
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or rows.shape != (2,) or rows.dtype.kind not in "iu":
        raise StoreError(f"{where} shard={text!r} shard_rows={rows.tolist()} must be 'i/n' and [start, stop]")
    return Shard(int(index), int(count), int(rows[0]), int(rows[1]), str(f.attrs["shard_of"]))


def _check_inputs(
    records: list[ImageRecord],
    word_to_idx: Mapping[str, int],
    tokens: np.ndarray,
    caption_image: np.ndarray,
    raw_captions: Sequence[str],
) -> None:
    if not records:
        raise ValueError("no records: nothing to store")
    duplicates = [image_id for image_id, n in Counter(r.image_id for r in records).items() if n > 1]
    if duplicates:
        raise ValueError(f"image ids must be unique, repeated: {duplicates[:5]}")
    check_special_ids(word_to_idx)
    # (K, max_length + 2): <START>, at least one word, <END>.
    check_caption_ids(tokens, name="tokens", allow_empty=True, min_length=3, vocab_size=max(word_to_idx.values()) + 1)
    K = tokens.shape[0]
    if caption_image.shape != (K,) or not np.issubdtype(caption_image.dtype, np.integer):
        raise ValueError(f"caption_image must be ({K},) integers, one per caption, got {caption_image.shape}")
    if K and (caption_image.min() < 0 or caption_image.max() >= len(records)):
        raise ValueError(
            f"caption_image must index the {len(records)} records, got {caption_image.min()}..{caption_image.max()}"
        )
    if len(raw_captions) != K:
        raise ValueError(f"raw_captions must hold {K} captions, one per row of tokens, got {len(raw_captions)}")


def _relative(path: Path, root: str) -> str:
    """``path`` relative to ``root`` when inside it, else absolute; POSIX separators so files move across systems."""
    absolute = Path(os.path.abspath(path))  # abspath, not resolve: a symlinked data folder keeps its name
    if root:
        try:
            return absolute.relative_to(root).as_posix()
        except ValueError:
            pass  # outside the root: keep it absolute
    return absolute.as_posix()


def _fingerprint(attrs: list[str], strings: list[list[str]], arrays: list[np.ndarray]) -> str:
    """SHA-256 over the attributes, string columns and integer arrays, each part delimited."""
    digest = hashlib.sha256(FORMAT.encode())
    for part in [*attrs, *("\0".join(column) for column in strings)]:
        digest.update(b"\1" + part.encode())
    for array in arrays:
        digest.update(b"\1" + repr(array.shape).encode() + np.ascontiguousarray(array, dtype=np.int64).tobytes())
    return digest.hexdigest()
