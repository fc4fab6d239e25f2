"""Running ``rnncap serve`` as a real process for the tests (test_serve_process, test_serve_browser)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
