"""Your own photos: a folder plus a captions file, CSV or JSON lines.

CSV (header required, ``split`` optional)::

    image,caption,split
    dogs/1.jpg,A dog runs on the grass.,train
    dogs/1.jpg,"A brown dog, running.",train

JSON lines (``.jsonl``, ``.ndjson`` or ``.json``), one object a line: ``{"image": "dogs/1.jpg", "caption": "...",
"split": "train"}``. ``image`` is a path relative to the folder; a photo may have any number of captions, one row
each; rows without ``split`` are ``"train"``. Files that exist but are not readable photos are found only when
features are extracted (the store marks them failed, see :meth:`~rnncap.data.store.Store.mark_failed`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from rnncap.data.records import Dataset, ImageRecord, check_captions, check_files_exist, require_dir

DEFAULT_FILES = ("captions.csv", "captions.jsonl")


def read_folder(
    root: str | os.PathLike, captions_file: str | os.PathLike | None = None, default_split: str = "train"
) -> Dataset:
    """Read a folder of photos described by a captions file.

    Args:
        root: the photo folder; ``image`` entries are relative to it.
        captions_file: the CSV or JSON-lines file: a path, or a name inside ``root``; default ``captions.csv`` or
            ``captions.jsonl`` in ``root``.
        default_split: the split of rows that name none.

    Returns:
        A :class:`Dataset` named ``folder``: one record per photo (id = the ``image`` entry), in order of first
        appearance, grouped by split in order of each split's first appearance.
    """
    root = Path(root)
    require_dir(root, "photo folder")
    path = _locate(root, captions_file)
    rows = _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
    if not rows:
        raise ValueError(f"{path} holds no captions")
    check_captions(path, ((f"line {line} ({image})", caption) for line, image, caption, _ in rows))
    captions: dict[str, list[str]] = {}
    split_of: dict[str, str] = {}
    for line, image, caption, split in rows:
        if not image:
            raise ValueError(f"{path} line {line}: empty 'image' entry")
        split = split or default_split
        if split_of.setdefault(image, split) != split:
            raise ValueError(f"{path} line {line}: {image} is in split {split!r} here but {split_of[image]!r} before")
        captions.setdefault(image, []).append(caption)
    splits = list(dict.fromkeys(split_of.values()))
    records = [
        ImageRecord(image, root / image, split, tuple(captions[image]))
        for split in splits
        for image in captions
        if split_of[image] == split
    ]
    check_files_exist(
        [r.path for r in records], f"photos named in {path.name}", hint=f" (paths are relative to {root})"
    )
    return Dataset("folder", root, tuple(records))


def _locate(root: Path, captions_file: str | os.PathLike | None) -> Path:
    if captions_file is None:
        for name in DEFAULT_FILES:
            if (root / name).is_file():
                return root / name
        raise FileNotFoundError(f"no captions file given and none of {list(DEFAULT_FILES)} in {root}")
    path = Path(captions_file)
    if not path.is_absolute() and not path.exists():
        path = root / path
    if not path.is_file():
        raise FileNotFoundError(f"captions file {captions_file} not found (looked in the working folder and in {root})")
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise ValueError(f"{path}: captions file must be .csv or JSON lines (.jsonl, .ndjson, .json)")
    return path


Row = tuple[int, str, str, str]  # line number, image, caption, split ("" when not given)


def _read_csv(path: Path) -> list[Row]:
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: spreadsheets often write a byte-order mark
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames or []
            if not {"image", "caption"} <= set(header):
                raise ValueError(f"{path}: the CSV header must name the columns 'image' and 'caption', got {header}")
            # A short row reads as None in its missing columns: an empty caption, reported as such.
            return [
                (reader.line_num, (row["image"] or "").strip(), row["caption"] or "", (row.get("split") or "").strip())
                for row in reader
            ]
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{path} line {reader.line_num}: not valid CSV text: {e}") from e


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: {e}") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {number} is not valid JSON: {e}") from e
        if not isinstance(obj, dict) or "image" not in obj or "caption" not in obj:
            raise ValueError(f"{path} line {number}: expected an object with 'image' and 'caption', got {line[:80]!r}")
        rows.append((number, str(obj["image"]).strip(), obj["caption"], str(obj.get("split") or "").strip()))
    return rows
