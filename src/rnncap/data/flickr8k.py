"""Flickr8k (Hodosh, Young and Hockenmaier 2013) in its original layout.

Under ``root``::

    Flickr8k.token.txt          NAME.jpg#K<TAB>caption, 5 captions per photo
    Flickr_8k.trainImages.txt   6,000 file names, one a line (dev: 1,000, test: 1,000)
    Images/NAME.jpg

Captions whose photo is in none of the three split lists are skipped and listed in ``Dataset.skipped``: that
covers the original token file's known defect (``2258277193_586949ec62.jpg.1``, a name with no photo) and the 91
photos the authors left out of every split.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from rnncap.data.records import Dataset, ImageRecord, check_captions, check_files_exist, require_dir

TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
IMAGE_DIR = "Images"


def read_flickr8k(root: str | os.PathLike, splits: Sequence[str] = ("train", "dev", "test")) -> Dataset:
    """Read Flickr8k photos, captions and the official splits.

    Args:
        root: the folder holding the token file, the split lists and ``Images/``.
        splits: which of ``train``, ``dev``, ``test`` to read; every photo of a requested split must be present.

    Returns:
        A :class:`Dataset` named ``flickr8k``: one record per photo (id = file name), grouped by split in the order
        of ``splits``, in the order of the split list within a split; captions in the token file's order.
    """
    root = Path(root)
    require_dir(root, "Flickr8k folder")
    splits = tuple(splits)
    unknown = [s for s in splits if s not in SPLIT_FILES]
    if unknown or not splits:
        raise ValueError(f"unknown Flickr8k split(s) {unknown or list(splits)}: choose from {list(SPLIT_FILES)}")
    image_dir = root / IMAGE_DIR
    require_dir(image_dir, "Flickr8k photo folder")

    split_of, order = _read_split_lists(root, splits)
    captions = _read_token_file(root / TOKEN_FILE)

    skipped = [
        f"{image}: in no split list ({len(caps)} captions)" for image, caps in captions.items() if image not in split_of
    ]
    records = []
    for split in splits:
        skipped += [
            f"{image}: in {SPLIT_FILES[split]} but has no caption in {TOKEN_FILE}"
            for image in order[split]
            if image not in captions
        ]
        split_records = [
            ImageRecord(image, image_dir / image, split, tuple(captions[image]))
            for image in order[split]
            if image in captions
        ]
        others = [s for s in splits if s != split] or [s for s in SPLIT_FILES if s != split]
        check_files_exist(
            [r.path for r in split_records],
            f"photos of split {split!r} (listed in {SPLIT_FILES[split]})",
            hint=f"; read only the splits whose photos you have, e.g. splits={tuple(others)} "
            f"(CLI: --splits {','.join(others)})",
        )
        records += split_records
    return Dataset("flickr8k", root, tuple(records), tuple(skipped))


def _read_split_lists(root: Path, splits: tuple[str, ...]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The split lists: ``{photo: split}`` over every list present, to tell "in another split" from "in no split"
    (only the requested splits' lists are required), and ``{split: photos in the list's order}``."""
    split_of: dict[str, str] = {}
    order: dict[str, list[str]] = {}
    for split, name in SPLIT_FILES.items():
        if split not in splits and not (root / name).is_file():
            continue
        names = _read_lines(root / name)
        order[split] = names
        split_of.update(dict.fromkeys(names, split))
    return split_of, order


def _read_token_file(token_file: Path) -> dict[str, list[str]]:
    """``{photo: captions}`` in the token file's order, every line and caption checked."""
    captions: dict[str, list[str]] = defaultdict(list)
    entries = []
    for number, line in enumerate(_read_lines(token_file, keep_empty=True), start=1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_, _ = key.rpartition("#")
        if not tab or not hash_:
            raise ValueError(f"{token_file} line {number}: expected 'NAME.jpg#K<TAB>caption', got {line[:80]!r}")
        entries.append((f"line {number} ({key})", caption))
        captions[image].append(caption)
    check_captions(token_file, entries)
    return captions


def _read_lines(path: Path, keep_empty: bool = False) -> list[str]:
    """The lines of a UTF-8 text file, with a clear error if it is missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text: {e}") from e
    return lines if keep_empty else [line.strip() for line in lines if line.strip()]
