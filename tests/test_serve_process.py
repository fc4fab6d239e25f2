"""``rnncap serve`` as a real process under uvicorn: it listens on loopback, answers, and on SIGTERM or SIGINT
lets the request in flight finish, then exits 0.

Helpers here (``running_server``) also serve the browser test."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

PHOTOS = sorted((Path(__file__).resolve().parents[1] / "examples" / "photos").glob("*.jpg"))
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


class Server:
    """A running ``rnncap serve`` subprocess: its URL and everything it printed so far."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = LISTENING.search(line)
            if found:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()  # the process ended

    def wait_ready(self, timeout: float) -> str:
        self._ready.wait(timeout)
        if self.url is None:
            raise AssertionError("rnncap serve did not start:\n" + "".join(self.lines))
        return self.url

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def running_server(cache: Path, *args: str) -> Iterator[Server]:
    """Start ``rnncap serve --port 0`` (a free port: uvicorn prints which) with the test session's export cache."""
    env = {**os.environ, "RNNCAP_CACHE": str(cache)}
    command = [sys.executable, "-m", "rnncap.cli", "serve", "--port", "0", *args]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    server = Server(process)
    try:
        server.wait_ready(180)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


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
