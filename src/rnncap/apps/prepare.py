"""From a data set on disk to the prepared HDF5 file the trainer reads: what ``rnncap prepare`` does.

Two steps, each resumable: :func:`rnncap.data.create_store` writes photos, captions and vocabulary (seconds), then
:func:`extract_into_store` runs the CNN over every photo whose features are not written yet (hours for COCO on a
CPU). Running the same preparation again continues an interrupted extraction; unreadable photos are reported by
name, marked in the file and left out of every split, and cost nothing else. ``prepare_dataset(..., shard=(i, n))``
does the same for shard ``i`` of ``n`` of the photos, into a part file that :mod:`rnncap.apps.prepare_shards`
merges with the others (or runs under torchrun, one shard per process).

CS231n's ``coco_captioning`` folder already holds features and encoded captions: :func:`prepare_cs231n` copies
them into the same file format, so that one trainer reads both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnncap.apps.outputs import check_writable
from rnncap.apps.paths import model_path
from rnncap.data import (
    Dataset,
    ImageRecord,
    Prepared,
    create_store,
    open_store,
    prepare_records,
    read_cs231n,
    summary_line,
)
from rnncap.models.serialization import read_model_file
from rnncap.text import check_special_ids, decode_captions

if TYPE_CHECKING:
    from rnncap.encoders.encoder import Backend


@dataclass(frozen=True)
class PrepareResult:
    """What a preparation did, for printing.

    Attributes:
        path: the prepared file.
        summary: what was found (photos per split, captions, vocabulary, entries skipped by the reader).
        created: False when the file already held this data and only the missing features were extracted.
        encoded: photos encoded by this run.
        failed: ``(photo, reason)`` of every photo that could not be read, in this run.
        seconds: wall time of the extraction.
    """

    path: Path
    summary: str
    created: bool
    encoded: int
    failed: list[tuple[str, str]]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return (self.encoded + len(self.failed)) / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Extraction:
    """How the CNN runs over the photos: one set of settings for every way of preparing (whole, shard, torchrun).

    Attributes:
        encoder: a name for :func:`rnncap.encoders.load_encoder`.
        backend: "auto", "onnx" or "torch" (see ``load_encoder``).
        batch_size: photos per inference.
        workers: photo-decoding processes.
        grid: also store the spatial grid features (for attention models).
        progress: show a progress bar.
    """

    encoder: str = "efficientnet-lite2"
    backend: Backend = "auto"
    batch_size: int = 32
    workers: int = 2
    grid: bool = True
    progress: bool = True


def prepare_dataset(
    dataset: Dataset,
    out: str | os.PathLike,
    extraction: Extraction = Extraction(),
    *,
    min_count: int = 5,
    max_length: int = 16,
    word_to_idx: Mapping[str, int] | None = None,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
) -> PrepareResult:
    """Prepare ``dataset``: vocabulary from its train split, encoded captions, and CNN features of every photo.

    Args:
        dataset: from a reader (``read_flickr8k``, ``read_coco``, ``read_folder``).
        out: the HDF5 file to write (or to continue).
        extraction: the encoder and how it runs.
        min_count: words seen fewer times in the train split become ``<UNK>``.
        max_length: the most words kept per caption.
        word_to_idx: encode with this vocabulary (e.g. :func:`read_vocabulary` of a trained model) instead of
            building one from the train split: a test set for an existing model needs no train split.
        overwrite: replace a file that holds other data, or features of another encoder.
        shard: ``(i, n)``: write only shard ``i`` of ``n`` (its photos' features, every caption of them, the
            vocabulary of the whole data set) into ``out``, a part for :func:`rnncap.data.store_merge.merge_shards`.

    Raises:
        OutputError: ``out`` is a folder or cannot be written (checked before anything is read or encoded).
        ValueError: no ``word_to_idx`` and no train split to build the vocabulary from; a bad ``shard``.
    """
    check_writable(out, "out")
    prepared = prepare_records(dataset, min_count=min_count, max_length=max_length, word_to_idx=word_to_idx)
    return prepare_records_into(dataset, prepared, out, extraction, overwrite=overwrite, shard=shard)


def prepare_records_into(
    dataset: Dataset,
    prepared: Prepared,
    out: str | os.PathLike,
    extraction: Extraction,
    *,
    overwrite: bool = False,
    shard: tuple[int, int] | None = None,
    threads: int | None = None,
    position: int | None = None,
) -> PrepareResult:
    """:func:`prepare_dataset` once the captions are encoded (``prepared``: :func:`rnncap.data.prepare_records` of
    ``dataset``): write the store (or shard) and extract its features. ``threads`` and ``position``: see
    :func:`extract_into_store`."""
    created = create_store(
        out, dataset, *prepared, root=dataset.root, name=dataset.name, overwrite=overwrite, shard=shard
    )
    result = extract_into_store(out, extraction, restart=overwrite, shard=shard, threads=threads, position=position)
    return PrepareResult(Path(out), summary_line(dataset, prepared), created, *result)


def read_vocabulary(source: str | os.PathLike) -> dict[str, int]:
    """The vocabulary (word_to_idx) of a shipped model's name, a model file or a vocabulary JSON file.

    Args:
        source: ``flickr8k-attention`` or another shipped model (:func:`rnncap.apps.paths.model_path`), a model
            ``.npz``, or a ``.json`` holding ``word_to_idx`` itself or CS231n's ``{"idx_to_word", "word_to_idx"}``.

    Raises:
        ModelFileError: no such model, or an unreadable model file.
        ValueError: a JSON file that is unreadable or not a vocabulary (the special tokens at their standard ids,
            every id an integer naming one word).
    """
    path = Path(source)
    if path.suffix.lower() != ".json":
        return read_model_file(model_path(source)).word_to_idx
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"vocabulary file {path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("word_to_idx"), dict):
        data = data["word_to_idx"]  # CS231n's coco2014_vocab.json
    if not isinstance(data, dict) or not all(
        isinstance(word, str) and isinstance(idx, int) and not isinstance(idx, bool) for word, idx in data.items()
    ):
        raise ValueError(
            f"vocabulary file {path} must hold a JSON object of word -> integer id (word_to_idx), "
            'or CS231n\'s {"idx_to_word": [...], "word_to_idx": {...}}'
        )
    check_special_ids(data, f"vocabulary file {path}")
    return data


def extract_into_store(
    path: str | os.PathLike,
    extraction: Extraction = Extraction(),
    *,
    restart: bool = False,
    shard: tuple[int, int] | None = None,
    threads: int | None = None,
    position: int | None = None,
) -> tuple[int, list[tuple[str, str]], float]:
    """Encode every photo of a prepared file that has no features yet.

    ``shard`` ``(i, n)`` labels the progress bar, ``position`` puts it on that line of the terminal (processes that
    share one), ``threads`` are the encoder's per inference (None: one per physical core).

    Returns:
        (photos encoded, ``(photo, reason)`` of the unreadable ones, seconds).
    """
    from rnncap.encoders import extract_features, load_encoder  # torch/onnxruntime load only when extracting

    with open_store(path, writable=True) as store:
        if store.pending().size == 0 and store.encoder == extraction.encoder and not restart:
            return 0, [], 0.0  # nothing left to do; another encoder's name goes on to begin_features, which refuses
        model = load_encoder(extraction.encoder, extraction.backend, num_threads=threads)
        # (L, C) of the grid features
        grid_shape = (model.spec.grid_cells, model.feature_dim) if extraction.grid else None
        store.begin_features(model.name, model.feature_dim, grid_shape, restart=restart)
        pending = store.pending()
        paths = store.image_paths()
        done = np.ones(len(paths), dtype=bool)
        done[pending] = False
        failed: list[tuple[str, str]] = []

        def on_error(index: int, message: str) -> None:
            store.mark_failed(index, message)
            failed.append((store.image_ids[index], message))

        report = extract_features(
            model,
            paths,
            store.write_features,
            on_error=on_error,
            skip=np.flatnonzero(done),
            batch_size=extraction.batch_size,
            workers=extraction.workers,
            with_grid=extraction.grid,
            progress=extraction.progress,
            desc=None if shard is None else f"shard {shard[0]}/{shard[1]} {model.name} features",
            position=position,
        )
    return report.encoded, failed, report.seconds


def prepare_cs231n(
    root: str | os.PathLike, out: str | os.PathLike, *, pca: bool = True, overwrite: bool = False
) -> str:
    """Copy CS231n's ``coco_captioning`` features, captions and vocabulary into a prepared file.

    Photos are named by their URL's file name where the URL files are there (``train2014/COCO_train2014_...jpg``),
    else by split and row. Returns a summary line. ``out`` is checked first
    (:func:`rnncap.apps.outputs.check_writable`).
    """
    check_writable(out, "out")
    data = read_cs231n(root, pca=pca)
    records: list[ImageRecord] = []
    tokens: list[np.ndarray] = []  # (K_split, T) encoded captions
    caption_image: list[np.ndarray] = []  # (K_split,) photo rows, numbered across splits
    raw: list[str] = []
    features: list[np.ndarray] = []  # (M_split, D)
    for split, part in data.splits.items():
        urls = data.urls.get(split) or []
        offset = len(records)
        for row in range(part.features.shape[0]):
            name = urls[row].rsplit("/", 1)[-1] if urls else f"{row}.jpg"
            records.append(ImageRecord(f"{split}-{row}", Path(f"{split}2014") / name, split, ()))
        tokens.append(part.captions)
        caption_image.append(part.image_idxs + offset)
        raw.extend(decode_captions(part.captions, data.idx_to_word))
        features.append(part.features)
    create_store(
        out,
        records,
        data.word_to_idx,
        np.concatenate(tokens),
        np.concatenate(caption_image),
        raw,
        name="cs231n-coco2014",
        overwrite=overwrite,
    )
    encoder = "cs231n-vgg16-fc7-pca" if pca else "cs231n-vgg16-fc7"
    with open_store(out, writable=True) as store:
        store.begin_features(encoder, features[0].shape[1], restart=overwrite)
        store.write_features(np.arange(len(records)), np.concatenate(features))
        summary = store.summary()
    return summary
