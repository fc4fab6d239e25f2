"""``rnncap serve`` as a real process under uvicorn: it listens on loopback, answers, and on SIGTERM or SIGINT
lets the request in flight finish, then exits 0."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest

from serve_helpers import PHOTOS, running_server


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_request_in_flight_finish_then_exits_0(tmp_path_factory, stop) -> None:
    cache = tmp_path_factory.getbasetemp() / "rnncap-cache"
    with running_server(cache, "--only-model") as server:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/api/health", timeout=30).json()["status"] == "ok"
        answers: list[httpx.Response] = []
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in PHOTOS]  # seconds of captioning
        request = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{server.url}/api/caption", files=files, timeout=120))
        )
        request.start()
        time.sleep(0.5)  # the photos are sent and being captioned
        server.process.send_signal(stop)
        request.join(120)
        assert server.process.wait(60) == 0, server.output
    [answer] = answers
    assert answer.status_code == 200 and len(answer.json()["captions"]) == len(PHOTOS)
    assert "Shutting down" in server.output and "Finished server process" in server.output
    assert "warning" not in server.output.lower()  # loopback: no exposure warning
