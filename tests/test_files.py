"""Atomic writes: the old file or the whole new one, never half of one, and no debris."""

from __future__ import annotations

import os

import pytest

from rnncap.files import atomic_write, replacing


def test_atomic_write_replaces_the_file_with_the_usual_permissions(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    assert atomic_write(path, lambda f: f.write(b"new")) == path
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(ValueError), replacing(tmp_path / "other.h5") as tmp:
        tmp.write_bytes(b"written by name")
        raise ValueError("checked and refused")
    assert os.listdir(tmp_path) == ["out.bin"]


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it and putting it back
    os.umask(mask)
    return mask
