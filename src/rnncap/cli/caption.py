"""``rnncap caption``: describe photos in words with a trained model.

rnncap caption PHOTO [PHOTO ...] [--model NAME_OR_PATH] [--beam 3] [--max-length N] [--batch-size 32] [--json]
               [--html GALLERY.html]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rnncap.cli.args import positive

if TYPE_CHECKING:
    from rnncap.captioner import Captioner

DESCRIPTION = """\
Caption photos with a trained model (default: the one shipped with rnncap).

Output: one line per photo, in the order given (a folder's photos sorted by
name): the path, a tab, the caption; `cut -f2` keeps the captions. With --json:
one JSON list of {"image": PATH, "caption": TEXT} objects, where an unreadable
photo has "caption": null and an "error" (safe for paths with tabs or newlines).

An unreadable photo (missing, not an image, corrupt) is reported on stderr as
`rnncap caption: error: PATH: reason` and the others are still captioned; the
exit status is then 1, else 0.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap caption`` to the command line."""
    caption = commands.add_parser(
        "caption",
        help="describe photos in words",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    caption.add_argument(
        "photos",
        nargs="+",
        metavar="PHOTO",
        help="photo files, or folders: their JPEG, PNG, WebP, GIF, BMP and TIFF files (not subfolders)",
    )
    caption.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a model file (.npz) or the name of a shipped model (default: the shipped one)",
    )
    caption.add_argument(
        "--beam", type=positive, metavar="N", default=3, help="beam width; 1 is greedy search (default 3)"
    )
    caption.add_argument(
        "--max-length",
        type=positive,
        metavar="N",
        help="the most tokens generated per caption, <END> included (default: the model's own)",
    )
    caption.add_argument(
        "--batch-size", type=positive, metavar="N", default=32, help="photos captioned together (default 32)"
    )
    caption.add_argument("--json", action="store_true", help="print one JSON list instead of tab-separated lines")
    caption.add_argument(
        "--html", type=Path, metavar="FILE", help="also write an HTML gallery of the photos and their captions"
    )
    # Hook for attention models: an `--attention MAPS.png` option (where the model looked for each word, drawn
    # over the photo) belongs here, fed by a Captioner method that also returns the attention weights.
    caption.set_defaults(run=_run_caption)


def _run_caption(args: argparse.Namespace) -> int:
    from rnncap.captioner import Captioner, find_images
    from rnncap.cli import EXIT_ERROR

    photos = find_images(args.photos)
    captioner = Captioner.from_pretrained(args.model)
    results = captioner.caption_files(
        photos, beam_size=args.beam, max_length=args.max_length, batch_size=args.batch_size
    )
    listed, failed = [], 0
    for result in results:
        if result.error is not None:
            failed += 1
            print(f"rnncap caption: error: {result.image}: {result.error}", file=sys.stderr)
        elif not args.json:
            print(f"{result.image}\t{result.caption}")
        listed.append(result.as_dict())
    if args.json:
        print(json.dumps(listed, indent=2, ensure_ascii=False))
    if args.html is not None:
        _write_gallery(args, captioner, listed)
    return EXIT_ERROR if failed else 0


def _write_gallery(args: argparse.Namespace, captioner: Captioner, listed: list[dict]) -> None:
    from rnncap.gallery import GalleryEntry, write_gallery

    entries = [
        GalleryEntry(Path(item["image"]), item["caption"] or f"(unreadable: {item['error']})", label=item["image"])
        for item in listed
    ]
    search = "greedy search" if args.beam == 1 else f"beam search, width {args.beam}"
    details = {"model": str(args.model or "the shipped model"), "encoder": captioner.encoder_name, "decoding": search}
    path = write_gallery(args.html, entries, title="rnncap: captions of your photos", details=details)
    print(f"wrote {path}", file=sys.stderr)
