"""Running the app under uvicorn: loopback by default, a warning for any other host, a graceful stop.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish (up to
``grace_s``), then the app's shutdown lets the batcher caption what it holds; :func:`serve` then returns, and
``rnncap serve`` exits 0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from rnncap.serve.app import ServeSettings, create_app
from rnncap.serve.models import ServedModels


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) means only this machine: 127.0.0.0/8, ::1 or localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def exposure_warning(host: str) -> str | None:
    """What to tell a person who binds the server beyond this machine, or None for a loopback host."""
    if is_loopback(host):
        return None
    return (
        f"serving on {host}: anyone who can reach this machine on the network can send photos to caption; "
        "there is no authentication (the default, 127.0.0.1, serves this machine only)"
    )


# glibc's mallopt parameters: serve every block of at least 1 MiB with its own mmap, and keep to 2 arenas.
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8
_MMAP_THRESHOLD_BYTES = 2**20


def steady_memory() -> bool:
    """Let a long-running server give back what each batch frees (glibc only; returns whether it could).

    A batch's arrays (16 photos' 260 x 260 squares, the encoder's activations, the beams' (N, B, T, L) history) are
    megabytes each. glibc raises its mmap threshold after such a block is freed, so later ones come from the heap,
    where the holes between them stay resident: RSS creeps up request after request. A fixed threshold keeps every
    large block in its own mapping, returned on free; two arenas keep the request threads from each growing one.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        fixed = libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
        return fixed and libc.mallopt(_M_ARENA_MAX, 2) == 1
    except (OSError, AttributeError):  # not glibc (musl, macOS): their allocators behave otherwise
        return False


def serve(
    models: ServedModels, settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, grace_s: float = 30
) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return."""
    app = create_app(models, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=int(grace_s),
        limit_concurrency=settings.max_queue * 4,  # connections beyond this get 503 before any body is read
        server_header=False,
    )
    _GracefulServer(config).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, but a stop asked for by SIGTERM or SIGINT ends the process with status 0.

    uvicorn re-raises the signal once it has shut down, so that the process dies of it (status -15, or a
    KeyboardInterrupt); a stop that finished every request is a success for ``rnncap serve``.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
