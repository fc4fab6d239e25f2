"""One self-contained HTML page of photos and their captions: what a model wrote, beside what people wrote.

::

    from rnncap.report.gallery import GalleryEntry, write_gallery
    entries = [GalleryEntry("photos/dog.jpg", "a dog runs on the grass", references=["A dog running."], label="dog")]
    write_gallery("gallery.html", entries, title="Flickr8k dev", scores={"BLEU-4": 0.19, "CIDEr": 0.42})

Every picture is embedded as a downsized JPEG in a base64 data URI, so that the page opens offline and still works
after it is moved or mailed; every text is escaped. A photo that is missing or unreadable becomes a placeholder
naming it, never an error: a gallery of a thousand photos must not fail on one.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rnncap import __version__

# A path to a photo file, a PIL image, or a uint8 array (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA.
Picture = str | os.PathLike | Image.Image | np.ndarray

_JPEG_QUALITY = 85  # a 224 px thumbnail is then about 10-20 kB, a 100-photo gallery 1-2 MB
# What reading a picture can raise besides OSError (missing, truncated, not an image): ValueError and TypeError
# from arrays of the wrong shape or dtype, DecompressionBombError from absurdly large files.
_UNREADABLE = (OSError, ValueError, TypeError, Image.DecompressionBombError)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; }
.summary { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; margin-bottom: 1.5em; }
.summary table { border-collapse: collapse; background: #fff; }
.summary caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
.summary th, .summary td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; }
.summary td.number { text-align: right; font-variant-numeric: tabular-nums; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 1em; }
figure { margin: 0; padding: .6em; background: #fff; border: 1px solid #ddd; border-radius: 6px; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figure img.extra { margin-top: .4em; }
.missing { display: flex; align-items: center; justify-content: center; text-align: center; min-height: 140px;
           background: #eee; color: #777; font-size: .85em; padding: .5em; overflow-wrap: anywhere; }
.label { color: #777; font-size: .8em; margin: .4em 0 0; overflow-wrap: anywhere; }
.caption { font-weight: 600; margin: .2em 0; }
.references { margin: .2em 0 0; padding-left: 1.2em; color: #555; font-size: .9em; }
footer { margin-top: 2em; color: #999; font-size: .8em; }
"""


@dataclass(frozen=True)
class GalleryEntry:
    """One photo of the gallery.

    Attributes:
        photo: a file path, a PIL image or a uint8 array ((H, W), (H, W, 3) or (H, W, 4)); None, a missing file
            or an unreadable one shows a placeholder.
        caption: the generated caption.
        references: human captions to compare with; empty for photos nobody described.
        label: a short name shown above the caption (the image id, the file name).
        extra: a second picture shown under the photo (e.g. an attention map), of the same kinds as ``photo``.
        extra_label: what ``extra`` shows, its alternative text.
    """

    photo: Picture | None
    caption: str
    references: Sequence[str] = ()
    label: str = ""
    extra: Picture | None = None
    extra_label: str = ""


def write_gallery(
    path: str | os.PathLike,
    entries: Iterable[GalleryEntry],
    title: str = "rnncap captions",
    scores: Mapping[str, float] | None = None,
    habits: Mapping[str, str] | None = None,
    details: Mapping[str, str] | None = None,
    thumbnail_size: int = 224,
    extra_size: int = 672,
) -> Path:
    """Write the gallery as one HTML file that needs nothing else.

    Args:
        path: the HTML file to write (its folder is created).
        entries: the photos, in the order shown.
        title: the page's heading.
        scores: metric name -> score on the 0-1 scale (a :class:`rnncap.metrics.Scores` also lists its skipped
            metrics); shown as a table on the 0-100 scale.
        habits: label -> text describing the captions (see :func:`rnncap.apps.evaluation_result.describe_stats`).
        details: label -> text about the run (model, data, decoding settings).
        thumbnail_size: the longest side of an embedded photo, in pixels (photos are only ever shrunk).
        extra_size: the longest side of an embedded extra picture (attention maps show many words).

    Returns:
        The path written.
    """
    if thumbnail_size < 1 or extra_size < 1:
        raise ValueError(f"thumbnail_size and extra_size must be positive, got {thumbnail_size} and {extra_size}")
    figures = [_figure(entry, thumbnail_size, extra_size) for entry in entries]
    tables = []
    if scores is not None:
        tables.append(_scores_table(scores))
    if habits:
        tables.append(_text_table("Caption habits", habits))
    if details:
        tables.append(_text_table("Run", details))
    summary = f'<section class="summary">\n{"".join(tables)}</section>\n' if tables else ""
    count = f"{len(figures):,} photo{'s' if len(figures) != 1 else ''}"
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_text(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_text(title)}</h1>\n{summary}"
        f'<main class="gallery">\n{"".join(figures)}</main>\n'
        f"<footer>{count}, written by rnncap {_text(__version__)}</footer>\n</body>\n</html>\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _figure(entry: GalleryEntry, thumbnail_size: int, extra_size: int) -> str:
    """One ``<figure>``: photo, optional extra picture, label, caption and the human captions."""
    parts = [_picture(entry.photo, thumbnail_size, alt=entry.caption, css_class="photo")]
    if entry.extra is not None:
        parts.append(_picture(entry.extra, extra_size, alt=entry.extra_label or "extra picture", css_class="extra"))
    parts.append("<figcaption>")
    if entry.label:
        parts.append(f'<p class="label">{_text(entry.label)}</p>')
    parts.append(f'<p class="caption">{_text(entry.caption)}</p>')
    if entry.references:
        items = "".join(f"<li>{_text(reference)}</li>" for reference in entry.references)
        parts.append(f'<ul class="references" title="human captions">{items}</ul>')
    parts.append("</figcaption>")
    return "<figure>" + "".join(parts) + "</figure>\n"


def _picture(picture: Picture | None, size: int, alt: str, css_class: str) -> str:
    """An ``<img>`` with the picture as an embedded JPEG, or a placeholder saying why there is none."""
    if picture is None:
        return _placeholder("no photo", css_class)
    if isinstance(picture, str | os.PathLike) and not Path(picture).is_file():
        return _placeholder(f"photo not found: {os.fspath(picture)}", css_class)
    try:
        image = _thumbnail(picture, size)
    except _UNREADABLE as err:
        name = os.fspath(picture) if isinstance(picture, str | os.PathLike) else type(picture).__name__
        return _placeholder(f"unreadable picture: {name} ({err or type(err).__name__})", css_class)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="{css_class}" src="{uri}" width="{image.width}" height="{image.height}" alt="{_text(alt)}">'


def _thumbnail(picture: Picture, size: int) -> Image.Image:
    """The picture as RGB, upright (EXIF orientation applied) and shrunk to at most ``size`` pixels a side."""
    if isinstance(picture, Image.Image):
        image = picture.convert("RGB")  # a copy: the caller's image is never changed
    elif isinstance(picture, np.ndarray):
        if picture.dtype != np.uint8:  # Image.fromarray would make a float image that turns black as RGB
            raise TypeError(f"picture arrays must be uint8, got {picture.dtype}")
        image = Image.fromarray(picture).convert("RGB")
    else:
        with Image.open(picture) as opened:
            opened.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, several times faster
            image = ImageOps.exif_transpose(opened).convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    return image


def _placeholder(reason: str, css_class: str) -> str:
    return f'<div class="{css_class} missing" role="img" aria-label="{_text(reason)}">{_text(reason)}</div>'


def _scores_table(scores: Mapping[str, float]) -> str:
    rows = [(name, f"{100 * value:.1f}") for name, value in scores.items()]
    rows += [(name, f"skipped ({reason})") for name, reason in getattr(scores, "skipped", {}).items()]
    body = "".join(f'<tr><th>{_text(name)}</th><td class="number">{_text(value)}</td></tr>' for name, value in rows)
    return (
        "<table><caption>Scores, 0-100 scale (CIDEr &times; 100 too)</caption>"
        f"<thead><tr><th>Metric</th><th>Score</th></tr></thead><tbody>{body}</tbody></table>\n"
    )


def _text_table(caption: str, rows: Mapping[str, str]) -> str:
    body = "".join(f"<tr><th>{_text(label)}</th><td>{_text(value)}</td></tr>" for label, value in rows.items())
    return f"<table><caption>{_text(caption)}</caption><tbody>{body}</tbody></table>\n"


def _text(value: object) -> str:
    """Any text made safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)
