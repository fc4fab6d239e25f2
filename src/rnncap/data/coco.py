"""COCO captions in the official layout, with the official splits or Karpathy's.

Official layout under ``root``::

    annotations/captions_train2014.json   {"images": [{"id", "file_name", ...}],
                                           "annotations": [{"image_id", "caption", ...}]}
    annotations/captions_val2014.json     (the same for val)
    train2014/COCO_train2014_000000000009.jpg ...
    val2014/...

(2017 is the same with ``2017`` in the names.) With Karpathy's split file ``dataset_coco.json``
(``{"images": [{"filepath": "val2014", "filename", "cocoid", "split": "train|val|test|restval",
"sentences": [{"raw"}]}]}``) the photos are split as in most captioning papers: 113,287 train (``restval`` counts
as train), 5,000 val, 5,000 test; the annotation files are not needed then.

Reference: Karpathy and Fei-Fei 2015, "Deep Visual-Semantic Alignments for Generating Image Descriptions"
(the split file ships with their neuraltalk2 code).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from rnncap.data.records import Dataset, ImageRecord, check_captions, drop_missing_photos, load_json, require_dir

OFFICIAL_SPLITS = ("train", "val")
KARPATHY_SPLITS = ("train", "val", "test")


def read_coco(
    root: str | os.PathLike,
    year: int = 2014,
    karpathy: str | os.PathLike | None = None,
    splits: Sequence[str] | None = None,
) -> Dataset:
    """Read COCO photos and captions.

    Args:
        root: the folder holding ``annotations/`` and the ``{train,val}{year}/`` photo folders.
        year: 2014 or 2017 (only the file names differ).
        karpathy: path of Karpathy's ``dataset_coco.json``; with it the splits are Karpathy's (restval -> train).
        splits: which splits to read; default all of them (official: train, val; Karpathy: those the split file
            has, of train, val, test). A split asked for that the files lack is an error.

    Returns:
        A :class:`Dataset` named ``coco{year}`` or ``coco{year}-karpathy``: one record per photo, ids the numeric
        COCO ids as strings, grouped by split in the order of ``splits`` and sorted by id within a split.
        Captions referring to a photo the file does not list, photos with no caption, and photos the json names
        that are not on disk (a partial download) are skipped, each listed in ``skipped``; none on disk is an error.
    """
    root = Path(root)
    require_dir(root, "COCO folder")
    if karpathy is not None:
        return _read_karpathy(root, year, Path(karpathy), tuple(splits or ()))
    splits = tuple(splits or OFFICIAL_SPLITS)
    _check_split_names(splits, OFFICIAL_SPLITS, "official COCO captions (test has none; use Karpathy's splits)")
    records: list[ImageRecord] = []
    skipped: list[str] = []
    for split in splits:
        split_records, split_skipped = _read_official_split(root, year, split)
        records += split_records
        skipped += split_skipped
    records, missing = drop_missing_photos(records, "COCO photos named in the annotations")
    return Dataset(f"coco{year}", root, tuple(records), tuple(skipped + missing))


def _read_official_split(root: Path, year: int, split: str) -> tuple[list[ImageRecord], list[str]]:
    """The records of one split's annotation file, sorted by id, and why photos or captions were skipped."""
    ann_file = root / "annotations" / f"captions_{split}{year}.json"
    if not ann_file.is_file():
        present = sorted(p.name for p in (root / "annotations").glob("captions_*.json"))
        raise FileNotFoundError(
            f"{ann_file} not found, needed for split {split!r} (annotation files present: {present or 'none'}); "
            "ask only for the splits you have"
        )
    folder = root / f"{split}{year}"
    require_dir(folder, f"COCO photo folder for split {split!r}:")
    data = load_json(ann_file)
    try:
        files = {int(image["id"]): str(image["file_name"]) for image in data["images"]}
        annotations = [(int(a["image_id"]), a["caption"]) for a in data["annotations"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{ann_file} is not a COCO captions file: expected 'images' with 'id' and 'file_name' and "
            f"'annotations' with 'image_id' and 'caption' ({type(e).__name__}: {e})"
        ) from e
    check_captions(ann_file, ((f"image {image_id}", caption) for image_id, caption in annotations))
    captions: dict[int, list[str]] = defaultdict(list)
    for image_id, caption in annotations:
        captions[image_id].append(caption)
    skipped = [
        f"{image_id}: captioned in {ann_file.name} but not in its images"
        for image_id in captions
        if image_id not in files
    ]
    skipped += [
        f"{files[image_id]}: no caption in {ann_file.name}" for image_id in sorted(files) if image_id not in captions
    ]
    records = [
        ImageRecord(str(image_id), folder / files[image_id], split, tuple(captions[image_id]))
        for image_id in sorted(files)
        if image_id in captions
    ]
    return records, skipped


def _read_karpathy(root: Path, year: int, split_file: Path, splits: tuple[str, ...]) -> Dataset:
    """The Karpathy-split reader behind :func:`read_coco`; no ``splits``: those the file has."""
    if splits:
        _check_split_names(splits, KARPATHY_SPLITS, "Karpathy's COCO split (restval is read as train)")
    data = load_json(split_file)
    try:
        entries = [
            (
                "train" if image["split"] == "restval" else str(image["split"]),
                root / image["filepath"] / image["filename"],
                str(int(image["cocoid"])),
                tuple(s["raw"] for s in image["sentences"]),
            )
            for image in data["images"]
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{split_file} is not Karpathy's dataset_coco.json: expected 'images' with 'filepath', 'filename', "
            f"'cocoid', 'split' and 'sentences' [{{'raw'}}] ({type(e).__name__}: {e})"
        ) from e
    present = [split for split in KARPATHY_SPLITS if split in {entry[0] for entry in entries}]
    splits = splits or tuple(present)
    if not splits:
        raise ValueError(f"{split_file} has no photos in any of the splits {list(KARPATHY_SPLITS)} (or restval)")
    entries = [entry for entry in entries if entry[0] in splits]
    check_captions(
        split_file,
        ((f"{path.name} sentence {i}", s) for _, path, _, sentences in entries for i, s in enumerate(sentences)),
    )
    by_split: dict[str, list[ImageRecord]] = {split: [] for split in splits}
    skipped = [f"{path.name}: no sentences in {split_file.name}" for _, path, _, sentences in entries if not sentences]
    for split, path, image_id, sentences in entries:
        if sentences:
            by_split[split].append(ImageRecord(image_id, path, split, sentences))
    empty = [split for split, recs in by_split.items() if not recs]
    if empty:
        raise ValueError(
            f"{split_file} has no photos in split(s) {empty} (splits in the file: {present}); "
            "ask only for those (--splits), or leave --splits out for all of them"
        )
    records = [r for split in splits for r in sorted(by_split[split], key=lambda r: int(r.image_id))]
    records, missing = drop_missing_photos(records, f"COCO photos named in {split_file.name}")
    return Dataset(f"coco{year}-karpathy", root, tuple(records), tuple(skipped + missing))


def _check_split_names(splits: tuple[str, ...], allowed: tuple[str, ...], what: str) -> None:
    unknown = [s for s in splits if s not in allowed]
    if unknown or not splits:
        raise ValueError(f"unknown split(s) {unknown or list(splits)} for {what}: choose from {list(allowed)}")
