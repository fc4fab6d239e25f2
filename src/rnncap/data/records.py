"""The record every photo reader returns, the checks they share, and records -> vocabulary and id arrays.

Every reader (:func:`~rnncap.data.read_coco`, :func:`~rnncap.data.read_flickr8k`, :func:`~rnncap.data.read_folder`)
returns a :class:`Dataset`: its :class:`ImageRecord` s (one per photo, with all its captions) plus the entries it
left out and why. :func:`prepare_records` turns records into what :func:`~rnncap.data.create_store` writes.

Empty captions (no letter or digit, so no tokens) are an error, not a silent skip: the readers raise a
``ValueError`` that names the file, the photo and the line, because a blank caption means a broken annotation file
and a model trained around it would hide that. Entries that cannot be used for a known, harmless reason (a caption
whose photo is in no split, a photo without captions) are skipped and listed in :attr:`Dataset.skipped`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rnncap.text import build_vocab, encode, has_words, tokenize

_SHOW = 5  # how many offending names an error message lists


@dataclass(frozen=True)
class ImageRecord:
    """One photo and its captions.

    Attributes:
        image_id: the data set's own id of the photo (COCO: the numeric id as a string; Flickr8k: the file name;
            folder: the path as written in the captions file).
        path: where the photo file is (root joined with the data set's relative path).
        split: ``"train"``, ``"val"``, ``"dev"``, ``"test"`` ... as the data set names it.
        captions: the raw caption strings, at least one, none empty.
    """

    image_id: str
    path: Path
    split: str
    captions: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """What a reader returns: the records, the data set root, and the entries left out.

    Attributes:
        name: which reader and edition (``"coco2014"``, ``"coco2014-karpathy"``, ``"flickr8k"``, ``"folder"``).
        root: the data set folder; :func:`~rnncap.data.create_store` stores photo paths relative to it.
        records: one per photo, grouped by split in the order the splits were asked for.
        skipped: one line per entry left out, ``"<name>: <why>"``.
    """

    name: str
    root: Path
    records: tuple[ImageRecord, ...]
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def split_counts(self) -> dict[str, int]:
        """Photos per split, in record order."""
        return dict(Counter(r.split for r in self.records))


class Prepared(NamedTuple):
    """Records turned into arrays (see :func:`prepare_records`); unpacks as a 4-tuple."""

    word_to_idx: dict[str, int]
    tokens: np.ndarray  # (K, max_length + 2) int32
    caption_image: np.ndarray  # (K,) int32, index into the records
    raw: list[str]  # (K,) the caption strings, references for evaluation


def prepare_records(
    records: Iterable[ImageRecord],
    min_count: int = 5,
    max_length: int = 16,
    word_to_idx: Mapping[str, int] | None = None,
    vocab_split: str = "train",
) -> Prepared:
    """Tokenize every caption, build the vocabulary from one split, and encode everything with it.

    Args:
        records: photos with captions (a :class:`Dataset` works).
        min_count: words seen fewer times in ``vocab_split`` become ``<UNK>``.
        max_length: the most words kept per caption.
        word_to_idx: use this vocabulary instead of building one (e.g. a trained model's or CS231n's).
        vocab_split: the split the vocabulary is built from, so that no word is learned from evaluation data.

    Returns:
        ``Prepared(word_to_idx, tokens (K, max_length + 2) int32, caption_image (K,) int32, raw list of K str)``,
        captions in record order.
    """
    records = list(records)
    if not records:
        raise ValueError("no records to prepare: the data set is empty")
    raw = [caption for r in records for caption in r.captions]
    tokenized = [tokenize(caption) for caption in raw]
    per_image = np.fromiter((len(r.captions) for r in records), dtype=np.int64, count=len(records))
    caption_image = np.repeat(np.arange(len(records), dtype=np.int32), per_image)
    empty = [i for i, tokens in enumerate(tokenized) if not tokens]
    if empty:  # records built by hand bypass the readers' check
        shown = "; ".join(
            f"{records[caption_image[i]].image_id} ({records[caption_image[i]].path}): {raw[i]!r}"
            for i in empty[:_SHOW]
        )
        raise ValueError(f"{len(empty)} caption(s) have no words: {shown}")
    if word_to_idx is None:
        in_split = np.array([r.split == vocab_split for r in records])[caption_image]
        if not in_split.any():
            splits = sorted({r.split for r in records})
            raise ValueError(
                f"no {vocab_split!r} split to build the vocabulary from (splits present: {splits}); "
                "read the training split too, or use an existing vocabulary: a trained model's or a vocabulary "
                "JSON (rnncap prepare ... --vocab MODEL_OR_VOCAB)"
            )
        word_to_idx = build_vocab((t for t, keep in zip(tokenized, in_split, strict=True) if keep), min_count)
    tokens = encode(tokenized, word_to_idx, max_length)
    return Prepared(dict(word_to_idx), tokens, caption_image, raw)


def summary_line(dataset: Dataset, prepared: Prepared | None = None) -> str:
    """One line for printing, e.g. ``flickr8k: 7,000 images (train 6,000, dev 1,000), 35,000 captions,
    vocabulary 2,995 words, 92 skipped``."""
    splits = ", ".join(f"{name} {count:,}" for name, count in dataset.split_counts().items())
    captions = sum(len(r.captions) for r in dataset.records)
    parts = [f"{dataset.name}: {len(dataset):,} images ({splits})", f"{captions:,} captions"]
    if prepared is not None:
        parts.append(f"vocabulary {len(prepared.word_to_idx):,} words")
    parts.append(f"{len(dataset.skipped):,} skipped")
    return ", ".join(parts)


# ---- shared by the readers -------------------------------------------------------------------------------------


def load_json(path: Path) -> Any:
    """``json.load`` with errors that name the file (missing, not JSON, not UTF-8)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


def require_dir(path: Path, what: str) -> None:
    """Raise a clear error if ``path`` is not a folder."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what} {path} not found (or not a folder)")


def check_captions(source: Path, entries: Iterable[tuple[str, str]]) -> None:
    """Raise if a caption is empty. ``entries``: (where, caption) pairs, ``where`` naming the photo or line."""
    empty = [(where, caption) for where, caption in entries if not isinstance(caption, str) or not has_words(caption)]
    if empty:
        shown = "; ".join(f"{where}: {caption!r}" for where, caption in empty[:_SHOW])
        raise ValueError(f"{source}: {len(empty)} empty caption(s) (no words): {shown}; fix or remove them")


def check_files_exist(paths: Sequence[Path], what: str, hint: str = "") -> None:
    """Raise if any of ``paths`` is missing; lists each folder once, so 100k photos cost one listing per folder."""
    missing = _missing_paths(paths)
    if missing:
        raise FileNotFoundError(_missing_message(missing, len(paths), what) + hint)


def drop_missing_photos(records: Sequence[ImageRecord], what: str) -> tuple[list[ImageRecord], list[str]]:
    """The records whose photo is on disk, and one skipped line per record whose photo is not.

    A partial download (the usual state of a COCO folder) costs only its missing photos; a data set none of whose
    photos is there is a wrong folder, not a partial download, and raises.

    Args:
        records: the records a reader built from its annotation file.
        what: the photos, in words, for the error (e.g. "COCO photos named in dataset_coco.json").

    Raises:
        FileNotFoundError: every photo is missing.
    """
    missing = set(_missing_paths([r.path for r in records]))
    if records and len(missing) == len(records):
        raise FileNotFoundError(_missing_message(sorted(missing), len(records), what) + "; is --root right?")
    kept = [r for r in records if r.path not in missing]
    skipped = [f"{r.path.name}: photo not found in {r.path.parent}" for r in records if r.path in missing]
    return kept, skipped


def _missing_paths(paths: Sequence[Path]) -> list[Path]:
    """The ``paths`` that are not files on disk, in order; each folder listed once."""
    listings: dict[Path, set[str]] = {}
    missing = []
    for path in paths:
        folder = path.parent
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        if path.name not in listings[folder]:
            missing.append(path)
    return missing


def _missing_message(missing: Sequence[Path], total: int, what: str) -> str:
    folders = {p.parent for p in missing}
    where = f" from {missing[0].parent}" if len(folders) == 1 else ""
    shown = ", ".join(p.name if where else str(p) for p in missing[:_SHOW])
    return f"{len(missing)} of {total} {what} are missing{where} (e.g. {shown})"
