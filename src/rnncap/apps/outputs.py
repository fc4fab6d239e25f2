"""The one rule for the files a command writes, checked before any work starts.

The rule, the same in every command: **an existing file is never replaced unless ``overwrite`` is given**
(``--overwrite`` on the command line). ``rnncap evaluate --json/--html`` and ``rnncap caption --html/--attention``
refuse an existing output; ``rnncap prepare --out`` continues a file that holds the same data and refuses one that
holds other data (its own form of the rule, in :func:`rnncap.data.create_store`); ``rnncap train``'s run folder has
its own resume rule. An output is also refused when it can never be written: a folder where the file should go, a
file where a folder of its path should be, a folder that cannot be created or written in, or one of the command's
own inputs (``--html`` naming the data file would destroy it, ``--overwrite`` or not).

Checking costs a few system calls, nothing is created or changed: a missing folder is made later by the writer
(:mod:`rnncap.files`), and writing is tried with a temporary file in the nearest folder that exists, removed at
once. So a mistake in an option costs a one-line error, not the minutes of captioning that come before the write.

::

    from rnncap.apps.outputs import check_outputs
    check_outputs({"--json": "scores.json", "--html": "gallery.html"}, overwrite=False, inputs=["data.h5"])
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

OVERWRITE_HINT = "give --overwrite (overwrite=True) to replace it"


class OutputError(ValueError):
    """An output path that must not or cannot be written; the message names it and what is wrong."""


Output = str | os.PathLike | None


def check_outputs(
    outputs: Mapping[str, Output] | Iterable[tuple[str, Output]],
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """Refuse outputs that would replace a file without ``overwrite`` or that cannot be written; returns the paths.

    Args:
        outputs: {how to name it in a message, e.g. ``"--json"``: the file to write}, or ``(label, file)`` pairs
            (one label for many files: ``[("--attention", "maps/dog.png"), ...]``); None files are skipped.
        overwrite: replace existing files (else an existing one is refused).
        inputs: files the command reads: an output naming one of them is refused even with ``overwrite``.

    Raises:
        OutputError: an output exists (without ``overwrite``), is a folder, is one of ``inputs``, is named twice,
            or lies where no file can be written.
    """
    checked: dict[Path, str] = {}
    pairs = outputs.items() if isinstance(outputs, Mapping) else outputs
    for label, path in pairs:
        if path is None:
            continue
        path = Path(path)
        check_writable(path, label)
        key = path.absolute()
        if key in checked:
            raise OutputError(f"{checked[key]} and {label} both name {path}: give each output its own file")
        checked[key] = label
        _check_not_input(path, label, inputs)
        if not overwrite and os.path.lexists(path):
            raise OutputError(f"{label} {path} already exists: {OVERWRITE_HINT}")
    return list(checked)


def check_writable(path: str | os.PathLike, label: str = "output") -> Path:
    """Refuse a file path that cannot be written: a folder, below a file, or in a folder that cannot be made or
    written in. An existing file is accepted (the caller's rule decides); returns the path.

    Raises:
        OutputError: naming ``label``, the path and the reason.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{label} {path} is a folder: expected the name of a file to write")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(f"{label} {path}: cannot create its folder, {folder} is a file, not a folder")
    _try_writing_in(folder, path, label)
    return path


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (as a file or a folder)."""
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _try_writing_in(folder: Path, path: Path, label: str) -> None:
    """Create and remove a temporary file in ``folder``: the only test of writing that holds for every user (root
    passes ``os.access`` on a read-only file system) and every file system."""
    probe = folder / f".rnncap-write-test.{os.getpid()}.{uuid.uuid4().hex}.tmp"
    try:
        with open(probe, "xb"):
            pass
    except OSError as err:
        where = "its folder" if folder == path.parent else f"{folder}, where its folder would be created,"
        raise OutputError(f"{label} {path}: cannot write in {where} ({err.strerror or err})") from None
    probe.unlink(missing_ok=True)


def _check_not_input(path: Path, label: str, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is one of the files the command reads (the same file, whatever path names it)."""
    if not path.exists():
        return
    for source in inputs:
        if Path(source).exists() and os.path.samefile(path, source):
            raise OutputError(f"{label} {path} is an input of this command ({source}): writing it would destroy it")
