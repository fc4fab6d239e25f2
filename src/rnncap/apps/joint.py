"""Several prepared files, one model: the one place where data sets are joined for training.

``rnncap train --data flickr8k.h5 --data coco.h5`` trains one model on the train splits of both::

    joint = read_joint([Path("flickr8k.h5"), Path("coco.h5")], "train", "dev", grid=False)
    joint.train                  # CaptionData: every store's train photos, one after the other (image indices offset)
    joint.parts[1].name          # "coco2017-karpathy": each data set's own validation split, scored on its own
    joint.val                    # the validation parts joined: what the validation loss is computed on

The rules:

- **One vocabulary**, built from the union of the stores' train captions: each store's raw captions
  (``captions/raw``) tokenised again with :func:`rnncap.text.tokenize`, exactly as ``rnncap prepare`` does, words
  seen fewer than ``min_count`` times (prepare's default 5) becoming ``<UNK>``; every store's captions, train and
  validation, encoded again with it. The stores' own vocabularies are not used.
- **The same features**: every store's encoder must be the same (and, for the attention model, every store must
  hold grid features); their ``max_length`` must agree, so that captions are cut alike.
- **Validation per data set**: the split ``val_split`` of each store, or its ``"val"`` split where it has no
  ``"dev"`` and ``val_split`` is the default ``"dev"`` (COCO's files have train and val). Each data set is scored on
  its own (``rnncap.apps.fit`` records ``"<name>/CIDEr"`` per data set and the mean as ``"CIDEr"``).
- A data set is named by the store's ``name`` (``flickr8k``, ``coco2017-karpathy``); two stores of the same name
  by their file names.

Features are read here and only here (:func:`read_split`) and reach the Trainer only as
:class:`~rnncap.train.CaptionData`: in memory, or streamed from the store (``store.open_split``) when a split's
features exceed :data:`STREAM_BYTES`; streamed parts are joined by :class:`~rnncap.train.ConcatFeatures`, read
part by part, so memory stays bounded whatever the data sets' sizes. The caller closes the sources
(``CaptionData.close``) when the run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

from rnncap.data.store import Store, StoreError, open_store
from rnncap.text import build_vocab, encode, tokenize
from rnncap.train import CaptionData, ConcatFeatures

STREAM_BYTES = 4 << 30
"""A split whose features take more than this in memory (pooled float32, grids float16) is streamed from its file
batch by batch; a smaller one is read whole, which is faster here (no read per batch, no read-ahead thread taking a
core from the training: 5-10% on 2 cores, benchmarks/bench_scale.py) and leaves room beside the training on a
24 GiB machine. Flickr8k's train grid (1.2 GB) and COCO-subset's (0.5 GB) are read whole; COCO 2014's (25 GB)
streams."""
DEFAULT_VAL_SPLIT = "dev"
FALLBACK_VAL_SPLIT = "val"  # what a data set without a dev split (COCO) is validated on by default


class ValPart(NamedTuple):
    """One data set's validation split, as the run scores it."""

    name: str  # the data set, e.g. "flickr8k"
    split: str  # the split it was read from, e.g. "dev" or "val"
    data: CaptionData  # its photos' features and its captions in the run's vocabulary
    references: list[list[str]]  # the human captions of each photo, in the order of data.features


class JointData(NamedTuple):
    """What a run on several prepared files reads (see the module docstring)."""

    train: CaptionData
    val: CaptionData  # the validation parts joined, for the validation loss
    parts: list[ValPart]
    encoder: str
    word_to_idx: dict[str, int]
    max_length: int  # words per caption at most, as the stores were prepared


def val_split_of(store: Store, val_split: str) -> str:
    """``val_split``, or ``"val"`` for a store that has no ``"dev"`` when ``val_split`` is the default ``"dev"``."""
    splits = store.splits()
    if val_split == DEFAULT_VAL_SPLIT and val_split not in splits and FALLBACK_VAL_SPLIT in splits:
        return FALLBACK_VAL_SPLIT
    return val_split


def read_split(store: Store, split: str, grid: bool) -> CaptionData:
    """A split with its pooled features (M, D) float32, or with ``grid`` its grid features (M, L, D) float16: in
    memory, or streamed from the file (a :class:`~rnncap.data.H5Rows`, to close) above :data:`STREAM_BYTES`."""
    try:
        streamed = store.open_split(split, grid=grid)  # opens the rows only: nothing is read yet
    except StoreError as exc:
        if grid:
            raise _grid_hint(exc) from exc
        raise
    features = streamed.features
    if int(np.prod(features.shape)) * features.dtype.itemsize > STREAM_BYTES:
        return streamed
    streamed.close()
    return CaptionData(read_features(store, split, grid), streamed.captions, streamed.image_idxs)


def read_features(store: Store, split: str, grid: bool) -> np.ndarray:
    """A split's pooled features (M, D) float32, or with ``grid`` its grid features (M, L, D) float16."""
    if not grid:
        return store.load_split(split).features
    try:
        return store.load_grid(split)
    except StoreError as exc:
        raise _grid_hint(exc) from exc


def _grid_hint(exc: StoreError) -> StoreError:
    return StoreError(
        f"{exc}; the attention model reads the grid: prepare the file again without --no-grid "
        "(rnncap prepare ... --overwrite), or train a model without attention"
    )


def read_joint(paths: Sequence[Path], train_split: str, val_split: str, grid: bool, min_count: int = 5) -> JointData:
    """Join the prepared files ``paths`` (in this order) into one run's data; see the module docstring.

    Raises:
        StoreError: a file that is missing or damaged, or lacks a split or the grid features.
        ValueError: fewer than two files, encoders or caption lengths that differ between them.
    """
    if len(paths) < 2:
        raise ValueError(f"read_joint joins several prepared files, got {len(paths)}")
    with ExitStack() as stack:
        stores = [stack.enter_context(open_store(path)) for path in paths]
        _check_alike(stores)
        names = data_set_names(stores)
        train_refs = [list(store.load_references(train_split).values()) for store in stores]
        train_tokens = [[tokenize(c) for captions in refs for c in captions] for refs in train_refs]
        word_to_idx = build_vocab((t for tokens in train_tokens for t in tokens), min_count)
        max_length = stores[0].max_length
        train_parts = [
            encode_references(read_split(store, train_split, grid).features, refs, word_to_idx, max_length, tokens)
            for store, refs, tokens in zip(stores, train_refs, train_tokens, strict=True)
        ]
        parts = []
        for store, name in zip(stores, names, strict=True):
            split = val_split_of(store, val_split)
            references = list(store.load_references(split).values())
            data = encode_references(read_split(store, split, grid).features, references, word_to_idx, max_length)
            parts.append(ValPart(name, split, data, references))
        return JointData(
            concatenate(train_parts),
            concatenate([part.data for part in parts]),
            parts,
            stores[0].encoder,
            word_to_idx,
            max_length,
        )


def data_set_names(stores: Sequence[Store]) -> list[str]:
    """Each store's data set name; where two share one, their file names (stems) instead."""
    names = [store.name or store.path.stem for store in stores]
    if len(set(names)) < len(names):
        names = [store.path.stem for store in stores]
    if len(set(names)) < len(names):
        names = [f"{name}#{i + 1}" for i, name in enumerate(names)]
    return names


def _check_alike(stores: Sequence[Store]) -> None:
    """Raise unless every store has the first one's encoder and max_length."""
    first = stores[0]
    for store in stores[1:]:
        if store.encoder != first.encoder:
            raise ValueError(
                f"{first.path} holds features of {first.encoder!r}, {store.path} of {store.encoder!r}: one model "
                "reads one encoder's features; prepare them with the same --encoder"
            )
        if store.max_length != first.max_length:
            raise ValueError(
                f"{first.path} was prepared with max_length {first.max_length}, {store.path} with "
                f"{store.max_length}: prepare them with the same --max-length"
            )


def encode_references(
    features: np.ndarray,
    references: list[list[str]],
    word_to_idx: dict[str, int],
    max_length: int,
    tokens: list[list[str]] | None = None,
) -> CaptionData:
    """Features (M, ...) and the raw captions of each of the M photos -> CaptionData in ``word_to_idx``."""
    if tokens is None:
        tokens = [tokenize(caption) for captions in references for caption in captions]
    per_image = np.fromiter((len(captions) for captions in references), dtype=np.int64, count=len(references))
    image_idxs = np.repeat(np.arange(len(references), dtype=np.int64), per_image)  # (K,)
    return CaptionData(features, encode(tokens, word_to_idx, max_length), image_idxs)


def concatenate(parts: Sequence[CaptionData]) -> CaptionData:
    """One CaptionData of ``parts`` one after the other: features stacked, image indices offset."""
    offsets = np.cumsum([0] + [len(part.features) for part in parts[:-1]])
    width = max(part.captions.shape[1] for part in parts)
    captions = [np.pad(part.captions, ((0, 0), (0, width - part.captions.shape[1]))) for part in parts]
    features = [part.features for part in parts]
    return CaptionData(
        # Streamed parts stay in their files, read part by part (a source stands where CaptionData types an array).
        np.concatenate(features)
        if all(isinstance(f, np.ndarray) for f in features)
        else cast(np.ndarray, ConcatFeatures(features)),
        np.concatenate(captions),
        np.concatenate([part.image_idxs + offset for part, offset in zip(parts, offsets, strict=True)]),
    )
