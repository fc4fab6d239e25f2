"""The web app: one page and a JSON API over :class:`rnncap.apps.captioner.Captioner`, as a Starlette ASGI app.

::

    from rnncap.serve import ServeSettings, create_app, load_served_models
    app = create_app(load_served_models(), ServeSettings())     # then: uvicorn.run(app, host="127.0.0.1")

Routes:
    GET  /                 the page (static/index.html, with app.js and style.css)
    GET  /api/health       readiness: the models and encoders are loaded; the queue and the batch sizes so far
    GET  /api/models       the models offered: name, encoder, whether it attends, default caption length
    POST /api/caption      photos (multipart field ``image``, one or more; or one photo as a raw image/* body),
                           options ``model``, ``beam``, ``max_length``, ``attention`` in the query or the form ->
                           {model, encoder, ms, captions: [{image, caption, candidates: [{caption, logprob}],
                           attention: {words, grid, weights, crop} | null, ms}]}

Errors answer ``{"error": "<plain words>", "status": <code>}``: 400 a bad option or an empty body, 404 an
unknown model, 413 an upload or a photo too large, 415 not a photo's content type, 422 not an image or damaged,
503 the queue is full (with Retry-After), 504 the photo took longer than the request's time limit.

Reading the upload and decoding photos run on Starlette's thread pool; encoding and search on the batcher's one
worker thread (:mod:`rnncap.serve.batching`): the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rnncap.apps.candidates import DetailedCaption
from rnncap.apps.captioner import Captioner
from rnncap.serve.batching import MicroBatcher, QueueFullError
from rnncap.serve.models import ServedModels
from rnncap.serve.uploads import RequestError, bool_option, decode_photo, int_option, read_uploads

MAX_BEAM = 10
MAX_TOKENS = 50
# The page and its two files, read once; the URL names are fixed, so no request path ever reaches the disk.
_STATIC = {
    "/": ("index.html", "text/html"),
    "/app.js": ("app.js", "text/javascript"),
    "/style.css": ("style.css", "text/css"),
}
_PAGE_POLICY = "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; object-src 'none'"


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits (``rnncap serve`` options)."""

    max_upload_bytes: int = 20 * 2**20  # one request's body
    max_photos: int = 16  # photos in one request
    max_pixels: int = Image.MAX_IMAGE_PIXELS or 89_478_485  # per photo, checked from the header before decoding
    max_queue: int = 64  # photos waiting for the worker; past it 503
    max_batch: int = 16  # photos encoded and searched together
    window_ms: float = 20.0  # how long a batch waits for more photos after its first
    timeout_s: float = 60.0  # one request's wait for its captions


def create_app(models: ServedModels, settings: ServeSettings | None = None) -> Starlette:
    """The ASGI app serving ``models`` (loaded already) within ``settings``."""
    settings = settings or ServeSettings()
    batcher = MicroBatcher(
        lambda key, images: _caption_batch(models, key, images),
        max_queue=settings.max_queue,
        max_batch=settings.max_batch,
        window_s=settings.window_ms / 1000,
    )
    pages = {url: (_read_static(name), kind) for url, (name, kind) in _STATIC.items()}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(batcher.stop)  # what is queued still gets its caption

    async def page(request: Request) -> Response:
        body, kind = pages[request.url.path]
        headers = {"Content-Security-Policy": _PAGE_POLICY, "X-Content-Type-Options": "nosniff"}
        return Response(body, media_type=kind, headers=headers)

    async def health(_: Request) -> Response:
        encoders = sorted({c.encoder_name for c in models.captioners.values()})
        stats = asdict(batcher.stats())
        return JSONResponse(
            {
                "status": "ok",
                "default": models.default,
                "models": list(models.captioners),
                "encoders": encoders,
                "queue": stats,
            }
        )

    async def list_models(_: Request) -> Response:
        return JSONResponse({"default": models.default, "models": models.describe()})

    async def caption(request: Request) -> Response:
        try:
            return await _caption_request(request, models, batcher, settings)
        except RequestError as refused:
            return _error(refused)
        except ClientDisconnect:  # nothing was queued: the photos were not read whole
            return Response(status_code=400)

    routes = [Route(url, page) for url in pages]
    routes += [
        Route("/api/health", health),
        Route("/api/models", list_models),
        Route("/api/caption", caption, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.batcher = batcher
    return app


async def _caption_request(
    request: Request, models: ServedModels, batcher: MicroBatcher, settings: ServeSettings
) -> Response:
    started = time.perf_counter()
    name = request.query_params.get("model")
    captioner = models.get(name)
    if captioner is None:
        raise RequestError(404, f"no model called {name!r} here: choose one of {', '.join(models.captioners)}")
    uploads, fields = await read_uploads(request, settings.max_upload_bytes, settings.max_photos)
    options = {**fields, **request.query_params}
    name = options.get("model") or None
    captioner = models.get(name)
    if captioner is None:  # named in the form
        raise RequestError(404, f"no model called {name!r} here: choose one of {', '.join(models.captioners)}")
    beam = int_option(options, "beam", 3, 1, MAX_BEAM)
    max_length = int_option(options, "max_length", None, 1, MAX_TOKENS)
    attention = bool_option(options, "attention", captioner.has_attention)
    if attention and not captioner.has_attention:
        raise RequestError(400, f"the model {name or models.default} does not attend: it has no attention maps")
    side = captioner.encoder_spec.image_size
    images = [await run_in_threadpool(decode_photo, upload, settings.max_pixels, side) for upload in uploads]
    key = (name or models.default, beam, max_length, attention)
    results = await _wait_for_captions(batcher, key, images, settings.timeout_s)
    return JSONResponse(
        {
            "model": name or models.default,
            "encoder": captioner.encoder_name,
            "ms": round((time.perf_counter() - started) * 1000, 1),
            "captions": [
                {"image": upload.name, **_caption_json(result, captioner)}
                for upload, result in zip(uploads, results, strict=True)
            ],
        }
    )


async def _wait_for_captions(
    batcher: MicroBatcher, key: tuple, images: Sequence[Image.Image], timeout_s: float
) -> list[DetailedCaption]:
    """Queue the photos and wait for their captions; 503 when the queue is full, 504 past ``timeout_s``."""
    futures = []
    try:
        for image in images:
            futures.append(batcher.submit(key, image))
    except QueueFullError:
        for future in futures:
            future.cancel()
        stats = batcher.stats()
        retry = max(1, math.ceil(stats.waiting / stats.max_batch * max(stats.last_batch_s, 0.1)))
        raise RequestError(
            503,
            f"the server is busy ({stats.waiting} photos waiting): try again in {retry} s",
            {"Retry-After": str(retry)},
        ) from None
    try:
        return list(await asyncio.wait_for(asyncio.gather(*map(asyncio.wrap_future, futures)), timeout_s))
    except TimeoutError:
        raise RequestError(504, f"captioning took longer than this server's limit of {timeout_s:g} s") from None
    finally:
        for future in futures:
            future.cancel()  # no-op once done; a photo still queued is skipped


def _caption_batch(models: ServedModels, key: tuple, images: Sequence[Image.Image]) -> list[DetailedCaption]:
    """The batcher's work for one key: (model, beam, max_length, attention) -> one batched captioning."""
    name, beam, max_length, attention = key
    captioner = models.captioners[name]
    return captioner.caption_detailed(images, beam_size=beam, max_length=max_length, attention=attention)


def _caption_json(result: DetailedCaption, captioner: Captioner) -> dict[str, object]:
    attention = None
    if result.attention is not None:
        weights = result.attention.weights  # (T, h, w)
        attention = {
            "words": list(result.attention.words),
            "grid": list(weights.shape[1:]),
            "weights": np.round(weights.reshape(len(weights), -1), 4).tolist(),  # T rows of h*w, row-major
            "crop": captioner.encoder_spec.crop_fraction,  # the maps lie on this centred square of the photo
        }
    return {
        "caption": result.caption,
        "candidates": [{"caption": c.caption, "logprob": round(c.logprob, 4)} for c in result.candidates],
        "attention": attention,
        "ms": round(result.ms, 1),
    }


def _error(refused: RequestError) -> Response:
    return JSONResponse({"error": refused.message, "status": refused.status}, refused.status, headers=refused.headers)


def _read_static(name: str) -> bytes:
    return (resources.files("rnncap.serve") / "static" / name).read_bytes()
