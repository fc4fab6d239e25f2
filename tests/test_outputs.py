"""rnncap.apps.outputs: the one rule for outputs (no file replaced without ``overwrite``) and the checks that an
output can be written at all, made before any work starts and changing nothing on disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rnncap.apps.outputs import OutputError, check_outputs, check_writable


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_new_files_in_new_folders_pass_and_nothing_is_created(tmp_path: Path) -> None:
    outputs = {"--json": tmp_path / "a" / "b" / "scores.json", "--html": tmp_path / "g.html", "--attention": None}
    assert check_outputs(outputs) == [tmp_path / "a" / "b" / "scores.json", tmp_path / "g.html"]
    assert _listing(tmp_path) == []  # no folder made, no probe file left behind


def test_an_existing_file_is_refused_without_overwrite(tmp_path: Path) -> None:
    existing = tmp_path / "scores.json"
    existing.write_text("an hour of evaluation")
    with pytest.raises(OutputError, match=f"--json {existing} already exists: give --overwrite"):
        check_outputs({"--json": existing})
    check_outputs({"--json": existing}, overwrite=True)
    assert existing.read_text() == "an hour of evaluation"  # checked, not touched
    (tmp_path / "link.html").symlink_to(tmp_path / "nowhere")  # a dangling link is an existing entry too
    with pytest.raises(OutputError, match="link.html already exists"):
        check_outputs({"--html": tmp_path / "link.html"})


def test_unusable_places_are_refused_even_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=f"--html {tmp_path / 'folder'} is a folder: expected the name of a file"):
        check_outputs({"--html": tmp_path / "folder"}, overwrite=True)
    below_a_file = tmp_path / "file" / "sub" / "g.html"
    with pytest.raises(OutputError, match=f"cannot create its folder, {tmp_path / 'file'} is a file, not a folder"):
        check_outputs({"--html": below_a_file}, overwrite=True)
    with pytest.raises(OutputError, match="--json and --html both name"):
        check_outputs({"--json": tmp_path / "x", "--html": tmp_path / "." / "x"}, overwrite=True)


def test_an_input_is_never_an_output(tmp_path: Path) -> None:
    data = tmp_path / "data.h5"
    data.write_bytes(b"hours of features")
    (tmp_path / "alias.h5").symlink_to(data)
    with pytest.raises(OutputError, match="is an input of this command"):
        check_outputs({"--html": tmp_path / "alias.h5"}, overwrite=True, inputs=[tmp_path / "missing.npz", data])
    assert data.read_bytes() == b"hours of features"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_folder_that_cannot_be_written_in_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError, match="cannot write in"):
            check_writable(locked / "new" / "g.html", "--html")
    finally:
        locked.chmod(0o700)


def test_check_writable_accepts_an_existing_file(tmp_path: Path) -> None:
    existing = tmp_path / "prepared.h5"
    existing.write_bytes(b"")
    assert check_writable(existing, "--out") == existing  # prepare continues it: create_store's rule decides


def test_many_files_under_one_label(tmp_path: Path) -> None:
    maps = [tmp_path / "maps" / "dog.png", tmp_path / "maps" / "cat.png", None]
    assert check_outputs([("--attention", path) for path in maps]) == maps[:2]
    (tmp_path / "maps").mkdir()
    maps[1].write_bytes(b"")
    with pytest.raises(OutputError, match=f"--attention {maps[1]} already exists"):
        check_outputs([("--html", tmp_path / "g.html"), *(("--attention", path) for path in maps)])
