"""The checks a prepared file passes before anything in it is used: every attribute, dataset and index relation of
:mod:`rnncap.data.store`'s layout, each failure a :class:`~rnncap.data.store.StoreError` that names the file, the
attribute or dataset, what it holds and what was expected.

They are cheap: :func:`check_layout` reads only shapes and dtypes (no feature value), the attributes and the small
per-photo and per-caption index columns are read whole (COCO: 123k photos, 616k captions, a few MB), and the
caption tokens are checked as they are read for a split (:func:`check_tokens`).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from rnncap.text import check_special_ids


class StoreError(ValueError):
    """A prepared file that is missing, damaged, of another format, or not ready for the request."""


# What each dataset must be: the dtype's kind ("str" for HDF5 strings, else numpy's kind letters: b bool, i/u
# integer, f floating), its number of dimensions, and which dimensions are M (photos) or K (captions).
_IMAGES = {key: ("str", 1, "M") for key in ("id", "split", "path", "error")} | {"ok": ("b", 1, "M")}
_LAYOUT: dict[str, tuple[str, int, str]] = {
    **{f"images/{key}": spec for key, spec in _IMAGES.items()},
    "captions/tokens": ("iu", 2, "K"),
    "captions/image": ("iu", 1, "K"),
    "captions/raw": ("str", 1, "K"),
    "features/done": ("b", 1, "M"),
}
_FEATURES = {"features/pooled": ("f", 2, "M"), "features/grid": ("f", 3, "M")}  # present once extraction began
_STR_ATTRS = ("encoder", "root", "name")


def damaged(path: Path, where: str, what: str) -> StoreError:
    """The error for a damaged file: ``PATH is damaged or incomplete: WHERE WHAT; ...``."""
    detail = f"{where} {what}" if where else what
    return StoreError(f"{path} is damaged or incomplete: {detail}; prepare it again (`rnncap prepare --overwrite`)")


def read_attrs(path: Path, f: h5py.File) -> tuple[dict[str, int], int]:
    """The vocabulary and ``max_length`` attributes, checked, and the string attributes' presence and type.

    Returns:
        (word_to_idx, max_length).
    """
    for key in ("vocab", "max_length", *_STR_ATTRS):
        if key not in f.attrs:
            raise damaged(path, f"attribute {key!r}", "is missing")
    for key in _STR_ATTRS:
        if not isinstance(f.attrs[key], str | bytes):
            raise damaged(path, f"attribute {key!r}", f"must be a string, got {f.attrs[key]!r}")
    max_length = f.attrs["max_length"]
    if not isinstance(max_length, int | np.integer) or isinstance(max_length, bool) or max_length < 1:
        raise damaged(path, "attribute 'max_length'", f"must be a positive integer, got {max_length!r}")
    return _read_vocab(path, f.attrs["vocab"]), int(max_length)


def _read_vocab(path: Path, text: object) -> dict[str, int]:
    try:
        vocab = json.loads(text)  # type: ignore[arg-type]  # str or bytes; anything else is caught below
    except (TypeError, ValueError) as err:
        raise damaged(path, "attribute 'vocab'", f"is not JSON: {err}") from None
    if not isinstance(vocab, dict) or not all(
        isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0 for idx in vocab.values()
    ):
        raise damaged(path, "attribute 'vocab'", "must map words to non-negative integer ids")
    try:
        check_special_ids(vocab, source="attribute 'vocab'")
    except ValueError as err:
        raise damaged(path, "", str(err)) from None
    return vocab


def check_layout(path: Path, f: h5py.File, max_length: int) -> tuple[int, int]:
    """Every dataset present, of its dtype and number of dimensions, with M and K agreeing between them.

    Returns:
        (M photos, K captions).
    """
    for name, spec in {**_LAYOUT, **{key: _FEATURES[key] for key in _FEATURES if key in f}}.items():
        _check_dataset(path, f, name, spec)
    M, K = len(f["images/id"]), len(f["captions/image"])
    for name, (_, _, length) in {**_LAYOUT, **_FEATURES}.items():
        if name in f and f[name].shape[0] != (M if length == "M" else K):
            counted = "photos (images/id)" if length == "M" else "captions (captions/image)"
            raise damaged(path, name, f"has {f[name].shape[0]} rows for the {M if length == 'M' else K} {counted}")
    if f["captions/tokens"].shape[1] != max_length + 2:
        raise damaged(
            path,
            "captions/tokens",
            f"has {f['captions/tokens'].shape[1]} columns, but attribute 'max_length' {max_length} means "
            f"{max_length + 2} (<START>, the words, <END>)",
        )
    if "features/pooled" in f and not f.attrs["encoder"]:
        raise damaged(path, "attribute 'encoder'", "is empty although features/pooled exists")
    return M, K


def _check_dataset(path: Path, f: h5py.File, name: str, spec: tuple[str, int, str]) -> None:
    kind, ndim, _ = spec
    if name not in f:
        raise damaged(path, name, "is missing")
    dataset = f[name]
    if not isinstance(dataset, h5py.Dataset):
        raise damaged(path, name, "is a group, not a dataset")
    is_str = h5py.check_string_dtype(dataset.dtype) is not None
    if (kind == "str") != is_str or (not is_str and dataset.dtype.kind not in kind):
        expected = {"str": "utf-8 strings", "b": "bool", "iu": "integers", "f": "floating point"}[kind]
        raise damaged(path, name, f"must hold {expected}, got dtype {dataset.dtype}")
    if dataset.ndim != ndim:
        raise damaged(path, name, f"must have {ndim} dimension(s), got shape {dataset.shape}")


def check_image_ids(path: Path, image_ids: list[str]) -> None:
    """Photo ids must be unique: references are gathered by id."""
    if len(set(image_ids)) != len(image_ids):
        seen: set[str] = set()
        repeated = next(i for i in image_ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise damaged(path, "images/id", f"repeats the photo id {repeated!r}: every photo needs its own")


def check_caption_image(path: Path, caption_image: np.ndarray, num_images: int) -> np.ndarray:
    """(K,) captions/image: every caption's photo must be a row of images/."""
    if caption_image.size and (caption_image.min() < 0 or caption_image.max() >= num_images):
        bad = int(caption_image.min() if caption_image.min() < 0 else caption_image.max())
        row = int(np.flatnonzero(caption_image == bad)[0])
        photos = f"the {num_images} photos are rows 0..{num_images - 1}"
        raise damaged(path, f"captions/image[{row}]", f"is {bad}, not a photo: {photos} of images/")
    return caption_image.astype(np.int64)


def check_tokens(path: Path, tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """(K_split, T) token ids read from captions/tokens: each must be an id of the vocabulary."""
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = int(tokens.min() if tokens.min() < 0 else tokens.max())
        ids = f"the ids of attribute 'vocab' are 0..{vocab_size - 1}"
        raise damaged(path, "captions/tokens", f"holds token id {bad}, outside the vocabulary: {ids}")
    return tokens
