"""Creating a prepared data file (its layout: :mod:`rnncap.data.store`): the input checks, the fingerprint by which
a re-run recognises its own file, and the write.

The file is written under a temporary name and renamed into place, so a crash never leaves half a store; the
feature extraction then fills it through :class:`~rnncap.data.store.Store`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from rnncap.data.records import ImageRecord
from rnncap.data.store import FORMAT, StoreError
from rnncap.files import replacing
from rnncap.text import check_caption_ids, check_special_ids

_STR = h5py.string_dtype("utf-8")


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

    Returns:
        True if the file was written; False if ``path`` already held exactly this data (features kept).

    The new file is written under a temporary name and renamed into place, so a crash never leaves half a store.
    """
    path = Path(path)
    records = list(records)
    tokens, caption_image = np.asarray(tokens), np.asarray(caption_image)
    _check_inputs(records, word_to_idx, tokens, caption_image, raw_captions)
    root_str = "" if root is None else os.path.abspath(root)
    ids = [r.image_id for r in records]
    splits = [r.split for r in records]
    paths = [_relative(r.path, root_str) for r in records]
    vocab = json.dumps(dict(word_to_idx), sort_keys=True, ensure_ascii=False)
    max_length = tokens.shape[1] - 2
    fingerprint = _fingerprint(
        [vocab, str(max_length), root_str, name], [ids, splits, paths, list(raw_captions)], [tokens, caption_image]
    )

    if path.exists() and not overwrite:
        existing = _existing_fingerprint(path)
        if existing == fingerprint:
            return False
        raise StoreError(
            f"{path} already exists and holds {'other data' if existing else 'no rnncap prepared data'}; "
            "pass overwrite=True (CLI: --overwrite) to replace it (its features are lost), or choose another file"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    attrs = {"format": FORMAT, "vocab": vocab, "max_length": max_length, "encoder": "", "root": root_str, "name": name}
    attrs["fingerprint"] = fingerprint
    columns = {"id": ids, "split": splits, "path": paths}
    _write_new_store(path, attrs, columns, tokens, caption_image, list(raw_captions))
    return True


def _write_new_store(
    path: Path,
    attrs: dict[str, str | int],
    columns: dict[str, list[str]],
    tokens: np.ndarray,
    caption_image: np.ndarray,
    raw_captions: list[str],
) -> None:
    """Write a prepared file of :mod:`rnncap.data.store`'s layout, no features begun, under a temporary name renamed
    into place; ``columns`` are the images/ string columns (id, split, path)."""
    M = len(columns["id"])
    with replacing(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        for key, column in columns.items():
            f.create_dataset(f"images/{key}", data=column, dtype=_STR)
        f.create_dataset("images/ok", data=np.ones(M, dtype=bool))
        f.create_dataset("images/error", data=[""] * M, dtype=_STR)
        f.create_dataset("captions/tokens", data=tokens.astype(np.int32, copy=False))
        f.create_dataset("captions/image", data=caption_image.astype(np.int32, copy=False))
        f.create_dataset("captions/raw", data=raw_captions, dtype=_STR)
        f.create_dataset("features/done", data=np.zeros(M, dtype=bool))


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


def _existing_fingerprint(path: Path) -> str | None:
    """The fingerprint of an existing prepared file, None if the file is not one."""
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["fingerprint"]) if f.attrs.get("format") == FORMAT else None
    except (OSError, KeyError):
        return None
