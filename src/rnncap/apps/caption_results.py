"""What captioning photos gives back, and the gallery page of it: what :class:`rnncap.apps.captioner.Captioner`
returns and what ``rnncap caption`` prints, draws and writes.

::

    from rnncap.apps.caption_results import write_caption_gallery

    [result] = captioner.caption_files(["photos/dog.jpg"], attention=True)
    result.as_dict()                             # {"image": "photos/dog.jpg", "caption": "a dog runs ..."}
    result.attention.words                       # ('a', 'dog', ...): where the model looked for each word
    result = result.write_attention("maps/dog.png")        # as_dict() now names the file too
    write_caption_gallery("gallery.html", [result], model="flickr8k-attention", encoder=captioner.encoder_name,
                          beam_size=3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from rnncap.report.attention_maps import MAPS_LABEL, draw_attention, write_attention
from rnncap.report.gallery import GalleryEntry, write_gallery

GALLERY_TITLE = "rnncap: captions of your photos"


@dataclass(frozen=True, eq=False)
class AttendedCaption:
    """A caption and where the model looked for each of its words.

    Attributes:
        caption: the T words joined by spaces.
        words: the T words.
        weights: (T, h, w) attention weights over the encoder's h x w grid, one map per word, each summing to 1.
            Cell (i, j) is the block in row i, column j of an h x w division of ``square`` (a CNN cell sees
            beyond its block, but is centred on it).
        square: (S, S, 3) uint8, the photo as the encoder read it: the centred square of its shorter side, resized.
            Draw the maps over this square, never over the original photo, or the grid will not line up.
    """

    caption: str
    words: tuple[str, ...]
    weights: np.ndarray
    square: np.ndarray

    def draw(self, *, columns: int = 5, panel_size: int | None = None) -> Image.Image:
        """The maps of every word as one picture: see :func:`rnncap.report.attention_maps.draw_attention`."""
        return draw_attention(self.square, self.words, self.weights, columns=columns, panel_size=panel_size)

    def write(self, path: str | os.PathLike, *, columns: int = 5, panel_size: int | None = None) -> Path:
        """Write :meth:`draw` as a PNG file (atomically; its folder is created); returns the path."""
        return write_attention(path, self.square, self.words, self.weights, columns=columns, panel_size=panel_size)


@dataclass(frozen=True)
class CaptionResult:
    """The outcome for one photo file: a caption, or the reason it could not be read (then ``caption`` is None).

    ``attention`` holds where the model looked for each word when :meth:`Captioner.caption_files` was asked for it;
    ``attention_file`` the PNG file those maps were written to (see :meth:`write_attention`).
    """

    image: str
    caption: str | None
    error: str | None = None
    attention: AttendedCaption | None = field(default=None, compare=False, repr=False)
    attention_file: Path | None = None

    def as_dict(self) -> dict[str, str | None]:
        """``{"image", "caption"}``, plus ``"error"`` for an unreadable photo and ``"attention"`` (the map file)
        when one was written: what ``rnncap caption --json`` lists."""
        if self.error is not None:
            return {"image": self.image, "caption": None, "error": self.error}
        listed: dict[str, str | None] = {"image": self.image, "caption": self.caption}
        if self.attention_file is not None:
            listed["attention"] = str(self.attention_file)
        return listed

    def write_attention(self, path: str | os.PathLike) -> CaptionResult:
        """Write the attention maps to a PNG file (:meth:`AttendedCaption.write`).

        Returns:
            This result with ``attention_file`` set, and without ``attention``: the maps are on disk now, and
            results of thousands of photos need not each keep the square of its photo.

        Raises:
            ValueError: the result holds no attention maps (an unreadable photo, or captioned without attention).
        """
        if self.attention is None:
            raise ValueError(f"{self.image}: no attention maps to write (unreadable, or captioned without attention)")
        return replace(self, attention=None, attention_file=self.attention.write(path))


def write_caption_gallery(
    path: str | os.PathLike,
    results: Iterable[CaptionResult],
    *,
    model: str,
    encoder: str,
    beam_size: int,
    title: str = GALLERY_TITLE,
) -> Path:
    """An HTML page of captioned photo files that opens offline (:func:`rnncap.report.gallery.write_gallery`).

    Args:
        path: the HTML file to write (its folder is created).
        results: from :meth:`Captioner.caption_files`, in the order shown: each photo with its path and caption
            (an unreadable one as a placeholder, its caption saying why), and under it where the model looked for
            each word: its ``attention_file``, else its ``attention`` drawn, if it has either.
        model: how the page names the model, e.g. its file.
        encoder: the image encoder's name (:attr:`Captioner.encoder_name`).
        beam_size: the beam the captions were searched with; 1 is greedy search.
        title: the page's heading.

    Returns:
        The path written.
    """
    entries = [
        GalleryEntry(
            Path(result.image),
            f"(unreadable: {result.error})" if result.caption is None else result.caption,
            label=result.image,
            extra=_attention_picture(result),
            extra_label=MAPS_LABEL,
        )
        for result in results
    ]
    search = "greedy search" if beam_size == 1 else f"beam search, width {beam_size}"
    details = {"model": model, "encoder": encoder, "decoding": search}
    return write_gallery(path, entries, title=title, details=details)


def _attention_picture(result: CaptionResult) -> Path | Image.Image | None:
    """The result's attention maps as the gallery shows them: the file written, else drawn now; None without."""
    if result.attention_file is not None:
        return result.attention_file
    return None if result.attention is None else result.attention.draw()
