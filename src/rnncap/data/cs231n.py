"""CS231n's ``coco_captioning`` folder (assignment 3), read as it is: features and encoded captions, no photos.

Layout, as the course's ``get_coco_dataset.sh`` unpacks it::

    coco2014_captions.h5          train_captions (N, 17) int32, train_image_idxs (N,) int32,
                                  val_captions (N', 17) int32, val_image_idxs (N',) int32
    train2014_vgg16_fc7.h5        features (M, 4096) float32: VGG-16 fc7 activations
    train2014_vgg16_fc7_pca.h5    features (M, 512) float32: the same reduced by PCA (what the assignment uses)
    val2014_vgg16_fc7.h5, val2014_vgg16_fc7_pca.h5
    coco2014_vocab.json           {"idx_to_word": [...], "word_to_idx": {...}}, 1,004 words
    train2014_urls.txt, val2014_urls.txt   one photo URL a line, row i of the features (optional here)

Captions are ``<START> w... <END> <NULL>...`` with CS231n's ids, which are also rnncap's. Reference: CS231n
``cs231n/coco_utils.py`` ``load_coco_data``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rnncap.data.records import load_json, require_dir
from rnncap.text import check_special_ids, shared_id
from rnncap.train.data import CaptionData

CAPTIONS_FILE = "coco2014_captions.h5"
VOCAB_FILE = "coco2014_vocab.json"


@dataclass(frozen=True)
class CS231nData:
    """CS231n's COCO data, ready for the trainer.

    Attributes:
        splits: ``{"train": CaptionData, "val": CaptionData}`` (the splits asked for); features (M, 512) with PCA,
            (M, 4096) without; captions (K, 17) int32; image_idxs (K,) into the features' rows.
        word_to_idx: the vocabulary (``<NULL>=0 <START>=1 <END>=2 <UNK>=3``).
        idx_to_word: its inverse, a list indexed by id.
        urls: per split, the photo URL of every features row; empty lists where the URL file is absent.
    """

    splits: dict[str, CaptionData]
    word_to_idx: dict[str, int]
    idx_to_word: list[str]
    urls: dict[str, list[str]]


def read_cs231n(root: str | os.PathLike, pca: bool = True, splits: Sequence[str] = ("train", "val")) -> CS231nData:
    """Read CS231n's ``coco_captioning`` folder.

    Args:
        root: the ``coco_captioning`` folder.
        pca: read the 512-dimensional PCA features (CS231n's default) rather than the 4096-dimensional fc7 ones.
        splits: which of ``train`` and ``val`` to read.

    Returns:
        A :class:`CS231nData`. Every array is checked against the others: caption width, image indices within the
        features, token ids within the vocabulary, one URL per features row.
    """
    root = Path(root)
    require_dir(root, "CS231n coco_captioning folder")
    unknown = [s for s in splits if s not in ("train", "val")]
    if unknown or not splits:
        raise ValueError(f"unknown CS231n split(s) {unknown or list(splits)}: choose from ['train', 'val']")
    word_to_idx, idx_to_word = _read_vocab(root / VOCAB_FILE)
    captions_file = root / CAPTIONS_FILE
    out: dict[str, CaptionData] = {}
    urls: dict[str, list[str]] = {}
    for split in splits:
        captions = _read_dataset(captions_file, f"{split}_captions", ndim=2)
        image_idxs = _read_dataset(captions_file, f"{split}_image_idxs", ndim=1)
        features_file = root / f"{split}2014_vgg16_fc7{'_pca' if pca else ''}.h5"
        features = _read_dataset(features_file, "features", ndim=2).astype(np.float32, copy=False)
        if not np.issubdtype(captions.dtype, np.integer) or not np.issubdtype(image_idxs.dtype, np.integer):
            raise ValueError(
                f"{captions_file}: {split}_captions and {split}_image_idxs must hold integers, "
                f"got {captions.dtype} and {image_idxs.dtype}"
            )
        if image_idxs.shape[0] != captions.shape[0]:
            raise ValueError(
                f"{captions_file}: {split}_image_idxs has {image_idxs.shape[0]} rows, "
                f"{split}_captions has {captions.shape[0]}: expected one image index per caption"
            )
        M = features.shape[0]
        if image_idxs.size and (image_idxs.min() < 0 or image_idxs.max() >= M):
            raise ValueError(
                f"{captions_file}: {split}_image_idxs holds values outside [0, {M}), "
                f"the rows of {features_file.name} ({image_idxs.min()}..{image_idxs.max()})"
            )
        if captions.size and (captions.min() < 0 or captions.max() >= len(idx_to_word)):
            raise ValueError(
                f"{captions_file}: {split}_captions holds token ids outside [0, {len(idx_to_word)}), "
                f"the size of {VOCAB_FILE} ({captions.min()}..{captions.max()})"
            )
        out[split] = CaptionData(features, captions.astype(np.int32, copy=False), image_idxs.astype(np.int64))
        urls[split] = _read_urls(root / f"{split}2014_urls.txt", M)
    return CS231nData(out, word_to_idx, idx_to_word, urls)


def _read_vocab(path: Path) -> tuple[dict[str, int], list[str]]:
    data = load_json(path)
    try:
        idx_to_word = [str(w) for w in data["idx_to_word"]]
        word_to_idx = {str(w): int(i) for w, i in data["word_to_idx"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"{path}: expected 'idx_to_word' (a list) and 'word_to_idx' (an object), ({e!r})") from e
    bad = [w for i, w in enumerate(idx_to_word) if word_to_idx.get(w) != i]
    if bad or len(word_to_idx) != len(idx_to_word):
        shared = shared_id(word_to_idx)  # the usual cause: name both words and their id
        why = "" if shared is None else f": 'word_to_idx' gives id {shared[0]} to both {shared[1]!r} and {shared[2]!r}"
        raise ValueError(
            f"{path}: 'idx_to_word' and 'word_to_idx' disagree (e.g. {bad[:5]}, "
            f"{len(idx_to_word)} vs {len(word_to_idx)} words){why}"
        )
    check_special_ids(word_to_idx, source=str(path))
    return word_to_idx, idx_to_word


def _read_dataset(path: Path, name: str, ndim: int) -> np.ndarray:
    """One HDF5 dataset as an array, with errors naming the file and the dataset."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise ValueError(f"{path} has no dataset {name!r} (it holds {sorted(f.keys())})")
            array = f[name][()]
    except OSError as e:
        raise ValueError(f"{path} is not a readable HDF5 file: {e}") from e
    if array.ndim != ndim:
        raise ValueError(f"{path}: dataset {name!r} must have {ndim} dimension(s), got shape {array.shape}")
    return array


def _read_urls(path: Path, rows: int) -> list[str]:
    if not path.is_file():
        return []
    urls = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(urls) != rows:
        raise ValueError(f"{path} has {len(urls)} URLs, expected {rows}: one per features row")
    return urls
