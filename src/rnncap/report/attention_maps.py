"""Attention maps: where an attention model looked for each word of its caption, drawn over the photo.

::

    from rnncap import Captioner
    from rnncap.report.attention_maps import write_attention

    attended = Captioner.from_pretrained("runs/attention/best.npz").caption_with_attention("dog.jpg")
    write_attention("dog-attention.png", attended.square, attended.words, attended.weights)  # or attended.write(...)

One panel per word, ``columns`` panels a row, the word above its panel. A panel is the photo dimmed where the model
did not look: the word's h x w grid of weights is upsampled smoothly (bicubic) to the photo's size and scaled to its
own maximum, so the brightest part of a panel is where the model looked most for that word, and a model that looked
everywhere at once leaves the whole panel bright.

Draw the maps over the square the encoder read (the centred crop of the photo's shorter side, resized:
:meth:`rnncap.encoders.Encoder.preprocess`), never over the original photo: only on that square does grid cell
(i, j) cover row i, column j of an h x w division of the picture. Pillow only, so a map takes milliseconds and a
gallery of a hundred photos can show every photo's map.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from rnncap.files import atomic_write

MAPS_LABEL = "where the model looked for each word"  # what a drawing of the maps shows, e.g. in a gallery
# Brightness of the places the model did not look at all: dim enough to show the attention, bright enough that the
# photo stays recognisable everywhere.
_FLOOR = 0.25
_GAP = 8  # pixels between panels and around the picture
_BACKGROUND = (255, 255, 255)
_INK = (0, 0, 0)


def attention_overlay(square: np.ndarray, weights: np.ndarray, size: int | None = None) -> np.ndarray:
    """The photo dimmed where the model did not look, for one word.

    Args:
        square: (S, S, 3) uint8, the photo as the encoder read it.
        weights: (h, w) attention weights over the encoder's grid (any non-negative scale).
        size: side P of the result in pixels; default S.

    Returns:
        (P, P, 3) uint8: each pixel times ``0.25 + 0.75 * m``, where ``m`` is the bicubic upsampling of ``weights``
        to P x P divided by its maximum (1 everywhere for weights that are all zero).
    """
    square = _check_square(square)
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2 or 0 in weights.shape:
        raise ValueError(f"weights must be one word's (h, w) grid, got shape {weights.shape}")
    size = square.shape[0] if size is None else _check_size(size)
    photo = Image.fromarray(square)
    if size != square.shape[0]:
        photo = photo.resize((size, size), Image.Resampling.LANCZOS)
    # PIL maps pixel centres onto pixel centres, so cell (i, j) lands on the (i, j)-th of h x w equal blocks.
    upsampled = Image.fromarray(np.ascontiguousarray(weights)).resize((size, size), Image.Resampling.BICUBIC)  # mode F
    mask = np.asarray(upsampled)  # (P, P)
    mask = np.clip(mask, 0, None)  # bicubic overshoots below zero beside sharp peaks
    peak = mask.max()
    mask = mask / peak if peak > 0 else np.ones_like(mask)
    shade = _FLOOR + (1 - _FLOOR) * mask
    return np.rint(np.asarray(photo, dtype=np.float32) * shade[:, :, None]).astype(np.uint8)


def draw_attention(
    square: np.ndarray,
    words: Sequence[str],
    weights: np.ndarray,
    *,
    columns: int = 5,
    panel_size: int | None = None,
) -> Image.Image:
    """One picture of every word's attention: panels of :func:`attention_overlay` titled with their words.

    Args:
        square: (S, S, 3) uint8, the photo as the encoder read it (see the module docstring).
        words: the T words of the caption.
        weights: (T, h, w) attention weights, one grid per word.
        columns: panels per row; the rows are ``ceil(T / columns)``.
        panel_size: side of a panel in pixels; default S.

    Returns:
        An RGB image ``min(T, columns)`` panels wide and ``ceil(T / columns)`` rows high (a caption without words:
        one panel, the photo itself, titled "(no words)").
    """
    weights = np.asarray(weights)
    if weights.ndim != 3 or weights.shape[0] != len(words):
        raise ValueError(f"weights must be (T, h, w) with T = {len(words)} words, got shape {weights.shape}")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    square = _check_square(square)
    size = square.shape[0] if panel_size is None else _check_size(panel_size)
    if len(words):
        panels = [(word, attention_overlay(square, grid, size)) for word, grid in zip(words, weights, strict=True)]
    else:
        panels = [("(no words)", np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.LANCZOS)))]

    font_size = max(12, size // 14)
    font = ImageFont.load_default(size=font_size)
    title_height = round(1.6 * font_size)
    cell_width, cell_height = size + _GAP, title_height + size + _GAP
    across, down = min(len(panels), columns), math.ceil(len(panels) / columns)
    canvas = Image.new("RGB", (_GAP + across * cell_width, _GAP + down * cell_height), _BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    for index, (title, panel) in enumerate(panels):
        left, top = _GAP + (index % columns) * cell_width, _GAP + (index // columns) * cell_height
        pen.text((left + size / 2, top + title_height / 2), _fit(title, font, size), fill=_INK, font=font, anchor="mm")
        canvas.paste(Image.fromarray(panel), (left, top + title_height))
    return canvas


def write_attention(
    path: str | os.PathLike,
    square: np.ndarray,
    words: Sequence[str],
    weights: np.ndarray,
    *,
    columns: int = 5,
    panel_size: int | None = None,
) -> Path:
    """Draw :func:`draw_attention` into a PNG file, written atomically (its folder is created); returns the path."""
    image = draw_attention(square, words, weights, columns=columns, panel_size=panel_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda f: image.save(f, format="PNG"))


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """``text``, cut short with "..." if it is wider than ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def _check_square(square: np.ndarray) -> np.ndarray:
    square = np.asarray(square)
    if square.dtype != np.uint8 or square.ndim != 3 or square.shape[2] != 3 or square.shape[0] != square.shape[1]:
        raise ValueError(
            f"the photo must be the (S, S, 3) uint8 square the encoder read, got {square.shape} {square.dtype}"
        )
    return square


def _check_size(size: int) -> int:
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"panel size must be a positive number of pixels, got {size!r}")
    return size
