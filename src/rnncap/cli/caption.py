"""``rnncap caption``: describe photos in words with a trained model.

rnncap caption PHOTO [PHOTO ...] [--model NAME_OR_PATH] [--beam 3] [--max-length N] [--batch-size 32] [--json]
               [--html GALLERY.html] [--attention MAPS.png | --attention FOLDER]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rnncap.apps.paths import FoundPhotos, attention_map_paths, find_photos
from rnncap.cli.args import add_device_option, add_model_option, add_overwrite_option, positive

if TYPE_CHECKING:
    from rnncap.apps.caption_results import CaptionResult

DESCRIPTION = """\
Caption photos with a trained model (default: the one shipped with rnncap).

Output: one line per photo, in the order given (a folder's photos sorted by
name): the path, a tab, the caption; `cut -f2` keeps the captions. With --json:
one JSON list of {"image": PATH, "caption": TEXT} objects, where an unreadable
photo has "caption": null and an "error" (safe for paths with tabs or newlines).

An unreadable photo (missing, not an image, corrupt), a folder that holds no
photos or cannot be listed, and a broken symlink (dangling, or a loop) with a
photo's name in a folder are each reported on stderr as
`rnncap caption: error: PATH: reason` and the others are still captioned; the
exit status is then 1, else 0 (1 with a message if nothing is left to caption).

Attention maps (--attention, attention models only): one panel per word, the
photo dimmed where the model did not look for that word. They are drawn over
the square the encoder read (the centred square of the photo's shorter side),
so that the grid lines up. --attention MAPS.png takes one photo; for several,
name a folder: it gets one PNG per photo, named after the photo (dog.jpg ->
FOLDER/dog.png; photos of the same name get -2, -3, ...). With --json, each
photo's map is listed as "attention"; with --html, it is shown under the photo.
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
    add_model_option(caption)
    add_device_option(caption, "the decoding (the image encoder runs on the CPU)")
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
    caption.add_argument(
        "--attention",
        type=Path,
        metavar="MAPS.png|FOLDER",
        help="also draw where the model looked for each word (attention models only): a .png file for one photo, "
        "else a folder of one PNG per photo",
    )
    add_overwrite_option(caption, "existing --html and --attention files")
    caption.set_defaults(run=_run_caption)


def _run_caption(args: argparse.Namespace) -> int:
    from rnncap.apps.caption_results import write_caption_gallery
    from rnncap.apps.captioner import Captioner
    from rnncap.apps.outputs import check_outputs
    from rnncap.cli import EXIT_ERROR

    found = find_photos(args.photos)
    if not found.photos:
        for problem in found.problems:
            print(f"rnncap caption: error: {problem}", file=sys.stderr)
        more = f" (and {len(found.problems) - 1} more above)" if len(found.problems) > 1 else ""
        print(f"rnncap caption: error: nothing to caption: {found.problems[0].sentence()}{more}", file=sys.stderr)
        return EXIT_ERROR
    maps = None if args.attention is None else _map_paths(args.attention, found)
    outputs = [("--html", args.html), *(("--attention", path) for path in maps or ())]
    check_outputs(outputs, overwrite=args.overwrite, inputs=found.photos)  # before the model loads and captions
    captioner = Captioner.from_pretrained(args.model, device=args.device)
    results = captioner.caption_files(
        found,
        beam_size=args.beam,
        max_length=args.max_length,
        batch_size=args.batch_size,
        attention=maps is not None,
    )
    done: list[CaptionResult] = []
    for index, result in enumerate(results):
        if result.error is not None:
            print(f"rnncap caption: error: {result.image}: {result.error}", file=sys.stderr)
        elif not args.json:
            print(f"{result.image}\t{result.caption}")
        target = None if maps is None else maps[index]
        if target is not None and result.attention is not None:
            result = result.write_attention(target)  # the maps on disk now: the photo's square is let go
        done.append(result)
    if args.json:
        print(json.dumps([result.as_dict() for result in done], indent=2, ensure_ascii=False))
    if maps is not None:
        _report_maps(args.attention, done)
    if args.html is not None:
        model = str(args.model or "the shipped model")
        path = write_caption_gallery(args.html, done, model=model, encoder=captioner.encoder_name, beam_size=args.beam)
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_ERROR if any(result.error is not None for result in done) else 0


def _map_paths(target: Path, found: FoundPhotos) -> list[Path | None]:
    """:func:`rnncap.apps.paths.attention_map_paths` for each entry (None for a problem), its errors naming the
    option."""
    try:
        maps = iter(attention_map_paths(target, found.photos))
    except ValueError as err:
        raise ValueError(f"--attention {err}") from None
    return [next(maps) if isinstance(entry, str) else None for entry in found.entries]


def _report_maps(target: Path, done: list[CaptionResult]) -> None:
    drawn = sum(result.attention_file is not None for result in done)  # an unreadable photo has no map
    if target.suffix.lower() != ".png":
        print(f"wrote {drawn} attention map{'s' if drawn != 1 else ''} to {target}", file=sys.stderr)
    elif drawn:
        print(f"wrote {target}", file=sys.stderr)
