"""Photo -> the uint8 square an encoder reads: any file format, mode, size and aspect ratio.

Pillow and NumPy only (no torch), so that decode worker processes start fast and the preprocessing runs where
torch is absent.

The geometry is the one EfficientNet-Lite and ResNet were evaluated with: the largest centred square of
``crop_fraction`` times the shorter side is cut out and resized (bicubic) to ``size`` x ``size``. For
EfficientNet-Lite ``crop_fraction`` is 1: the whole shorter side, so a captioner sees as much of the photo as a
square can hold (a panorama loses its sides, never its aspect ratio). Measured on Flickr8k and COCO photos, this
gives the same or more confident ImageNet predictions than stretching the photo to a square or than TensorFlow's
eval crop of 260/292 of the shorter side.

Normalisation (mean and standard deviation) is not done here but inside the encoder's network, so that worker
processes ship 1 byte per value, and the torch and ONNX Runtime backends normalise identically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import cast

import numpy as np
from PIL import Image, ImageOps

ImageLike = Image.Image | np.ndarray

_WHITE = (255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB version of ``image`` whatever its mode.

    Grayscale and bilevel images are replicated over the three channels; CMYK (including Adobe's inverted CMYK
    JPEGs, which Pillow decodes) and YCbCr are converted; transparent images (RGBA, LA, or palette / grayscale
    with a transparent colour) are composited over white, as a viewer on a white page shows them, instead of
    exposing whatever colour hides under transparent pixels; 16-bit grayscale is scaled to 8 bits rather than
    clipped (Pillow's own conversion would turn most of it white).
    """
    if image.mode == "RGB":
        return image
    if _is_sixteen_bit(image):
        gray = np.asarray(image, dtype=np.float32) / 257.0  # 65535 -> 255
        return Image.fromarray(np.clip(np.rint(gray), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _is_sixteen_bit(image: Image.Image) -> bool:
    """Whether ``image`` is 16-bit grayscale: an ``I;16`` mode, or mode ``I`` (32-bit) holding values above 255."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return True
    # Mode "I" has one band, so getextrema() is (min, max): Pillow's type covers images of any number of bands.
    return image.mode == "I" and cast(tuple[float, float], image.getextrema())[1] > 255


def center_square(width: int, height: int, crop_fraction: float) -> tuple[float, float, float, float]:
    """The centred square ``(left, top, right, bottom)`` of side ``crop_fraction * min(width, height)``."""
    side = crop_fraction * min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def preprocess_image(image: ImageLike, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Convert a photo into the square an encoder reads.

    Args:
        image: a PIL image of any mode, or a uint8 array (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA.
        size: side of the output square in pixels.
        crop_fraction: side of the centred crop as a fraction of the shorter side (1.0: all of it).

    Returns:
        (size, size, 3) uint8 RGB, C-contiguous.
    """
    if isinstance(image, np.ndarray):
        image = _array_to_image(image)
    elif not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image or a uint8 array, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image has no pixels: size {image.size}")
    rgb = to_rgb(image)
    box = center_square(rgb.width, rgb.height, crop_fraction)
    # One resample straight from the crop box: no intermediate cropped copy, and the box keeps sub-pixel accuracy.
    out = rgb.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(out, dtype=np.uint8)


def load_image(path: str | os.PathLike, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Read a photo file and preprocess it (see :func:`preprocess_image`); EXIF orientation is applied.

    JPEG photos are decoded at a reduced scale (``Image.draft``: 1/2, 1/4 or 1/8 in the DCT, several times
    faster for large photos) whenever the reduced image still has at least the pixels the crop needs, so the
    result differs from a full decode only by the quality of the downscaling.

    Returns:
        (size, size, 3) uint8.

    Raises:
        OSError (including PIL.UnidentifiedImageError): the file is missing, not an image, truncated or corrupt.
    """
    with Image.open(path) as image:
        needed = math.ceil(size / crop_fraction)  # the shorter side must keep at least this many pixels
        image.draft("RGB", (needed, needed))
        image.load()  # decode inside the `with`, so that truncation errors surface here and the file is closed
        oriented = ImageOps.exif_transpose(image)
        return preprocess_image(oriented, size, crop_fraction)


def load_images(
    tasks: Sequence[tuple[int, str]], size: int, crop_fraction: float
) -> list[tuple[int, np.ndarray | None, str]]:
    """Load several photos, reporting failures instead of raising: the work of one decode worker process.

    Args:
        tasks: (index, path) pairs.

    Returns:
        One (index, (size, size, 3) uint8 or None, error message or "") per task, in order.
    """
    results: list[tuple[int, np.ndarray | None, str]] = []
    for index, path in tasks:
        try:
            results.append((index, load_image(path, size, crop_fraction), ""))
        except Exception as err:
            # Pillow raises OSError for unreadable or truncated files, but also SyntaxError, ValueError,
            # DecompressionBombError, zlib or struct errors from its format parsers: one bad file among a
            # hundred thousand must cost that file only. The type is kept in the message.
            results.append((index, None, f"{path}: {type(err).__name__}: {err}"))
    return results


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        raise TypeError(f"image arrays must be uint8 (0-255), got dtype {array.dtype}: scale and cast them first")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(array))  # uint8 -> L, RGB or RGBA by the channel count
    raise ValueError(f"image arrays must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {array.shape}")
