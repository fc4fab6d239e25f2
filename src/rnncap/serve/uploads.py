"""What a client sends, read with limits: the upload's size, the photos in it, their pixels, the options.

Every refusal is a :class:`RequestError`: an HTTP status and a sentence for a person (the page shows it as it is).
Nothing a client sends becomes a file path: photos are read from memory (multipart parts larger than
Starlette's spool size sit in anonymous temporary files), names are only echoed back.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

IMAGE_FIELD = "image"
FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class RequestError(Exception):
    """A request the server refuses: ``status`` and a plain-words ``message`` (and headers, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Upload:
    """One photo as sent: its name (the part's file name, or ``image-<n>``) and its bytes."""

    name: str
    data: bytes


def too_large(limit: int) -> RequestError:
    return RequestError(413, f"the upload is larger than this server accepts ({limit / 2**20:g} MB at most)")


def check_declared_size(request: Request, limit: int) -> None:
    """413 before reading anything when the Content-Length says the body is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)


async def limited_stream(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    """The body chunk by chunk, stopped with 413 as soon as more than ``limit`` bytes came (a chunked upload, or
    a client whose Content-Length lies)."""
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        yield chunk


async def read_uploads(request: Request, limit: int, max_photos: int) -> tuple[list[Upload], dict[str, str]]:
    """The photos of a request and its form fields: multipart ``image`` parts, or a raw body of type image/*.

    Raises:
        RequestError: 413 over ``limit`` bytes, 415 another content type, 400 an empty body, no ``image`` part, a
            malformed form or more than ``max_photos`` photos.
    """
    check_declared_size(request, limit)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        uploads, fields = await _read_form(request, limit, max_photos)
    elif kind.startswith("image/"):
        data = b"".join([chunk async for chunk in limited_stream(request, limit)])
        uploads, fields = [Upload("image-1", data)], {}
    else:
        raise RequestError(
            415,
            f"send photos as multipart/form-data with the field {IMAGE_FIELD!r}, or one photo as the body with an "
            f"image content type (image/jpeg, image/png, ...); got {kind or 'no content type'}",
        )
    if not uploads or all(not upload.data for upload in uploads):
        raise RequestError(400, "the request holds no photo: the body is empty")
    empty = [upload.name for upload in uploads if not upload.data]
    if empty:
        raise RequestError(400, f"{empty[0]} is empty (0 bytes)")
    return uploads, fields


async def _read_form(request: Request, limit: int, max_photos: int) -> tuple[list[Upload], dict[str, str]]:
    parser = MultiPartParser(
        request.headers, limited_stream(request, limit), max_files=max_photos, max_fields=16, max_part_size=4096
    )
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise RequestError(400, f"the form could not be read: {err}") from None
    try:
        uploads, fields = [], {}
        for index, (name, value) in enumerate(form.multi_items(), start=1):
            if isinstance(value, UploadFile) and name == IMAGE_FIELD:
                name_sent = (value.filename or "").replace("\\", "/").rsplit("/", 1)[-1]  # echoed only, never opened
                uploads.append(Upload(name_sent or f"image-{index}", await value.read()))
            elif isinstance(value, UploadFile):
                raise RequestError(400, f"unexpected file field {name!r}: send photos in the field {IMAGE_FIELD!r}")
            else:
                fields[name] = value
        if not uploads:
            raise RequestError(400, f"the form holds no photo: send it in the field {IMAGE_FIELD!r}")
        return uploads, fields
    finally:
        await form.close()


def decode_photo(upload: Upload, max_pixels: int, side: int) -> Image.Image:
    """The upload's pixels as an RGB image, its EXIF orientation applied.

    Only the header is read before the size check, so a decompression bomb (a small file of huge dimensions)
    costs nothing. A JPEG is decoded at a reduced scale that keeps at least ``side`` pixels on its shorter side.

    Raises:
        RequestError: 422 not an image or damaged, 413 more than ``max_pixels`` pixels.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(upload.data))
            width, height = opened.size
            if width * height > max_pixels:
                raise RequestError(
                    413,
                    f"{upload.name} is {width} x {height} pixels, more than the {max_pixels:,} this server decodes",
                )
            opened.draft("RGB", (side, side))
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise RequestError(422, f"{upload.name} is not an image ({FORMATS} expected)") from None
        raise RequestError(413, f"{upload.name} has too many pixels: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data; Pillow raises all three
        raise RequestError(422, f"{upload.name} is damaged and cannot be decoded ({err})") from None
    return image


def int_option(options: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    """An integer option between ``low`` and ``high``, or ``default`` when absent; 400 otherwise."""
    raw = options.get(name)
    if raw is None or raw == "":
        return default
    try:
        value: int | None = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise RequestError(400, f"{name} must be a whole number from {low} to {high}, got {raw!r}")
    return value


def bool_option(options: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no option (1/0, true/false, yes/no, on/off), or ``default`` when absent; 400 otherwise."""
    raw = options.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise RequestError(400, f"{name} must be true or false, got {raw!r}")
