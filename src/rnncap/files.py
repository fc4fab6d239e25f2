"""Files that are never half written: a temporary file beside the target, renamed over it once complete.

A reader (or a resumed run) then sees the old file or the whole new one, and a failure leaves no debris. The
temporary name holds the process id and a random part, so that concurrent writers never share one, and the file is
created by ``open`` (not ``tempfile.mkstemp``, whose files are private, 0600) so that it gets the permissions the
user's umask gives new files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_TEMPORARY = ".tmp"  # the temporary file of ``path`` is ``.NAME.<pid>.<random>.tmp`` beside it


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; renamed over ``path`` when the block ends without an error.

    For writers that take a file name (h5py, torch.onnx.export). The temporary file is removed in any case.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{_TEMPORARY}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(f)`` on a binary file object, atomically; returns the path."""
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "xb") as f:
        write(f)
    return path


def leftover_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files of ``path`` that writers killed before their rename left behind (none in normal use:
    a writer that fails removes its own)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*{_TEMPORARY}"))
