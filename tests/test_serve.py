"""The HTTP API of ``rnncap serve`` on the shipped models, through Starlette's test client: the example photos
captioned as the Captioner captions them, every bad input refused with its reason, limits, batching of concurrent
requests, and the page's files."""

from __future__ import annotations

import io
import platform
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from rnncap.apps.paths import ASSETS, DEFAULT_MODEL
from rnncap.serve import ServeSettings, create_app, load_served_models
from rnncap.serve.server import exposure_warning, is_loopback, steady_memory

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "examples" / "photos").glob("*.jpg"))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    # The test session's export cache (as test_shipped_model's): the encoder is exported once per session.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNCAP_CACHE", str(tmp_path_factory.getbasetemp() / "rnncap-cache"))
        return load_served_models()


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models)) as client:
        yield client


def jpeg(path: Path) -> tuple[str, bytes, str]:
    return (path.name, path.read_bytes(), "image/jpeg")


def post_raw(client, data: bytes, kind: str = "image/jpeg", query: str = ""):
    return client.post(f"/api/caption{query}", content=data, headers={"content-type": kind})


def refused(response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and words in body["error"], body


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header says it is ``width`` x ``height``: a decompression bomb's shape."""
    data = io.BytesIO()
    Image.new("L", (1, 1)).save(data, "PNG")
    raw = bytearray(data.getvalue())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    raw[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    raw[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr - 4 : ihdr + 13])))
    return bytes(raw)


SHIPPED_NAMES = {path.stem for path in ASSETS.glob("*.npz")}


# ---- what is offered ---------------------------------------------------------------------------------------------


def test_health_says_the_models_and_encoder_are_loaded(client) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["default"] == DEFAULT_MODEL
    assert set(health["models"]) == SHIPPED_NAMES
    assert health["encoders"] == ["efficientnet-lite2"] and health["queue"]["max_queue"] == 64


def test_models_lists_the_shipped_models_and_which_attend(client) -> None:
    listing = client.get("/api/models").json()
    by_name = {model["name"]: model for model in listing["models"]}
    assert listing["default"] == DEFAULT_MODEL and by_name[DEFAULT_MODEL]["default"]
    assert set(by_name) == SHIPPED_NAMES
    assert {name for name, model in by_name.items() if model["attention"]} == {
        name for name in SHIPPED_NAMES if name.endswith("-attention")
    }
    assert {m["encoder"] for m in by_name.values()} == {"efficientnet-lite2"}


def test_the_page_and_its_files_are_served_with_a_strict_policy(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'id="files"' in page.text and "/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "getUserMedia" in client.get("/app.js").text and client.get("/style.css").status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from a CDN: it works offline
    assert client.get("/static/../../etc/passwd").status_code == 404  # no path from a URL reaches the disk


# ---- good photos -------------------------------------------------------------------------------------------------


def test_the_example_photos_get_the_captioners_captions(client, models) -> None:
    response = client.post("/api/caption", files=[("image", jpeg(path)) for path in PHOTOS])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == DEFAULT_MODEL and body["encoder"] == "efficientnet-lite2"
    expected = models.get(None).caption_many(PHOTOS)  # the CLI's captions: the same Captioner
    assert [c["caption"] for c in body["captions"]] == expected
    assert [c["image"] for c in body["captions"]] == [p.name for p in PHOTOS]
    for result in body["captions"]:
        candidates = result["candidates"]
        assert len(candidates) == 3 and candidates[0]["caption"] == result["caption"]
        logprobs = [c["logprob"] for c in candidates]
        assert logprobs == sorted(logprobs, reverse=True) and logprobs[0] < 0
        attention = result["attention"]
        assert attention["words"] == result["caption"].split() and attention["grid"] == [9, 9]
        weights = np.array(attention["weights"])
        assert weights.shape == (len(attention["words"]), 81) and attention["crop"] == 1.0
        np.testing.assert_allclose(weights.sum(axis=1), 1, atol=5e-3)
        assert result["ms"] > 0
    assert len({c["caption"] for c in body["captions"]}) > len(PHOTOS) // 2


def test_a_raw_body_other_model_and_options(client, models) -> None:
    query = "?model=flickr8k-lstm&beam=1&max_length=5"
    body = post_raw(client, PHOTOS[0].read_bytes(), query=query).json()
    [result] = body["captions"]
    assert body["model"] == "flickr8k-lstm" and result["attention"] is None and len(result["candidates"]) == 1
    assert result["caption"] == models.get("flickr8k-lstm").caption(PHOTOS[0], beam_size=1, max_length=5)
    assert len(result["caption"].split()) <= 5


def test_options_can_come_in_the_form(client) -> None:
    data = {"beam": "2", "attention": "false"}
    response = client.post("/api/caption", files=[("image", jpeg(PHOTOS[1]))], data=data)
    [result] = response.json()["captions"]
    assert len(result["candidates"]) == 2 and result["attention"] is None


def test_every_format_and_mode_decodes(client) -> None:
    rgba = io.BytesIO()
    Image.new("RGBA", (64, 40), (200, 30, 30, 128)).save(rgba, "PNG")
    gray = io.BytesIO()
    Image.new("L", (50, 70), 90).save(gray, "WEBP")
    for data, kind in ((rgba.getvalue(), "image/png"), (gray.getvalue(), "image/webp")):
        assert post_raw(client, data, kind).status_code == 200


# ---- bad input ---------------------------------------------------------------------------------------------------


def test_an_empty_body_is_400(client) -> None:
    refused(post_raw(client, b""), 400, "empty")
    refused(client.post("/api/caption", files=[("image", ("a.jpg", b"", "image/jpeg"))]), 400, "empty")


def test_not_an_image_and_damaged_photos_are_422(client) -> None:
    refused(post_raw(client, b"just some text"), 422, "not an image")
    refused(post_raw(client, PHOTOS[0].read_bytes()[:300]), 422, "damaged")
    response = client.post(
        "/api/caption", files=[("image", jpeg(PHOTOS[0])), ("image", ("notes.png", b"hi", "image/png"))]
    )
    refused(response, 422, "notes.png is not an image")  # the bad one is named


def test_a_decompression_bomb_is_refused_before_decoding(client, models) -> None:
    refused(post_raw(client, png_claiming(40_000, 40_000), "image/png"), 413, "too many pixels")
    small_limit = ServeSettings(max_pixels=100 * 100)
    with TestClient(create_app(models, small_limit)) as strict:
        refused(post_raw(strict, PHOTOS[0].read_bytes()), 413, "more than the 10,000 this server decodes")


def test_an_unknown_model_is_404_and_never_a_path(client) -> None:
    for name in ("nope", "../../etc/passwd", "/tmp/x.npz", "flickr8k-attention.npz"):
        refused(post_raw(client, PHOTOS[0].read_bytes(), query=f"?model={name}"), 404, "choose one of flickr8k")
    refused(client.post("/api/caption", files=[("image", jpeg(PHOTOS[0]))], data={"model": "nope"}), 404, "nope")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("?beam=0", "beam must be a whole number from 1 to 10"),
        ("?beam=11", "beam must be"),
        ("?beam=two", "got 'two'"),
        ("?max_length=-1", "max_length must be"),
        ("?attention=maybe", "attention must be true or false"),
        ("?model=flickr8k-lstm&attention=true", "does not attend"),
    ],
)
def test_bad_options_are_400(client, query, words) -> None:
    refused(post_raw(client, PHOTOS[0].read_bytes(), query=query), 400, words)


def test_bad_forms_and_content_types(client) -> None:
    refused(post_raw(client, b"{}", "application/json"), 415, "multipart/form-data")
    refused(client.post("/api/caption", files=[("photo", jpeg(PHOTOS[0]))]), 400, "unexpected file field 'photo'")
    refused(client.post("/api/caption", data={"beam": "3"}, files=[]), 415, "multipart")  # urlencoded, no photo
    many = [("image", jpeg(PHOTOS[0]))] * 17
    refused(client.post("/api/caption", files=many), 400, "form could not be read")


def test_an_upload_over_the_limit_is_413(models) -> None:
    with TestClient(create_app(models, ServeSettings(max_upload_bytes=50_000))) as small:
        big = PHOTOS[0].read_bytes()
        assert len(big) > 50_000
        refused(post_raw(small, big), 413, "0.0476837 MB at most")
        # No Content-Length (chunked): stopped as the bytes come.
        chunks = (big[i : i + 8192] for i in range(0, len(big), 8192))
        refused(small.post("/api/caption", content=chunks, headers={"content-type": "image/jpeg"}), 413, "larger")
        refused(small.post("/api/caption", files=[("image", jpeg(PHOTOS[0]))]), 413, "larger")


def call_asgi(app, headers: list[tuple[bytes, bytes]], messages: list[dict]) -> tuple[int, int]:
    """Run one POST /api/caption through the ASGI app by hand: (status, how many body messages it read)."""
    import asyncio

    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        read += 1
        return messages[min(read - 1, len(messages) - 1)]

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/caption", "raw_path": b"/api/caption", "query_string": b"", "headers": headers,
        "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "root_path": "",
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), {"status": 0})
    return start["status"], read


def test_413_comes_before_the_body_is_read(client) -> None:
    app = client.app
    headers = [(b"content-type", b"image/jpeg"), (b"content-length", str(10**9).encode())]
    status, read = call_asgi(app, headers, [{"type": "http.request", "body": b"x" * 1000, "more_body": True}])
    assert (status, read) == (413, 0)


def test_a_client_that_leaves_mid_upload_costs_nothing(client) -> None:
    before = client.get("/api/health").json()["queue"]
    headers = [(b"content-type", b"image/jpeg"), (b"content-length", b"100000")]
    chunk = {"type": "http.request", "body": PHOTOS[0].read_bytes()[:5000], "more_body": True}
    status, _ = call_asgi(client.app, headers, [chunk, {"type": "http.disconnect"}])
    after = client.get("/api/health").json()["queue"]
    assert status in (0, 400) and after["photos"] == before["photos"] and after["waiting"] == 0
    assert post_raw(client, PHOTOS[0].read_bytes()).status_code == 200  # and the server goes on


# ---- load: bounded queue, time limit, batching -------------------------------------------------------------------


def test_past_the_queue_503_with_retry_after_and_the_time_limit_504(models) -> None:
    settings = ServeSettings(max_queue=1, max_batch=1, timeout_s=1.5)
    app = create_app(models, settings)
    busy = TestClient(app)  # no `with`: no start-up, so the worker is not running and the one photo stays queued
    waiting: list = []
    first = threading.Thread(target=lambda: waiting.append(post_raw(busy, PHOTOS[0].read_bytes())))
    first.start()
    deadline = time.monotonic() + 10
    while app.state.batcher.stats().waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    response = post_raw(busy, PHOTOS[1].read_bytes())
    refused(response, 503, "busy")
    assert int(response.headers["retry-after"]) >= 1
    first.join(10)
    refused(waiting[0], 504, "longer than this server's limit of 1.5 s")
    app.state.batcher.start()  # the timed-out photo was cancelled: the worker skips it
    app.state.batcher.stop()
    assert app.state.batcher.stats().photos == 0


def test_concurrent_requests_are_captioned_as_one_batch(models) -> None:
    settings = ServeSettings(window_ms=1500, max_batch=16)  # a wide window: all 6 requests land in it
    photos = PHOTOS[:6]
    with TestClient(create_app(models, settings)) as batching, ThreadPoolExecutor(len(photos)) as pool:
        responses = list(pool.map(lambda p: post_raw(batching, p.read_bytes(), query="?beam=2"), photos))
        sizes = batching.get("/api/health").json()["queue"]["batch_sizes"]
    assert [r.status_code for r in responses] == [200] * len(photos)
    captions = [r.json()["captions"][0]["caption"] for r in responses]
    assert captions == models.get(None).caption_many(photos, beam_size=2)  # batched = one by one
    assert max(int(size) for size in sizes) > 1, sizes  # at least two requests shared one encoder run and search


# ---- the host ----------------------------------------------------------------------------------------------------


def test_only_loopback_hosts_go_without_a_warning() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host) and exposure_warning(host) is None
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        assert not is_loopback(host) and "no authentication" in str(exposure_warning(host))


def test_the_cli_warns_for_another_host_before_anything_else(capsys) -> None:
    from rnncap.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--model", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "warning: serving on 0.0.0.0" in err and "no-such-model" in err
    assert main(["serve", "--port", "70000"]) == 1
    assert "--port must be from 0 to 65535" in capsys.readouterr().err


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's")
def test_the_server_fixes_glibcs_mmap_threshold() -> None:
    assert steady_memory()  # mallopt accepted both settings (bench_serve.py measures what they are for)
