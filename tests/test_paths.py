"""rnncap.apps.paths: where each photo's attention maps go (model names and folders: test_captioner.py)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from rnncap.apps.paths import IMAGE_SUFFIXES, PathProblem, attention_map_paths, find_images, find_photos


@pytest.mark.parametrize("name", ["maps.png", "MAPS.PNG"])
def test_one_photo_may_have_its_maps_in_a_png_file(tmp_path, name) -> None:
    target = tmp_path / name
    assert attention_map_paths(target, ["photos/dog.jpg"]) == [target]
    assert attention_map_paths(str(target), ["photos/dog.jpg"]) == [target]


def test_a_folder_gets_one_png_per_photo_named_after_it(tmp_path) -> None:
    photos = ["a/dog.jpg", "b/dog.jpg", "a/DOG.png", "cat.webp", "a/dog-2.jpg", "b/dog.tiff", "noextension"]
    assert attention_map_paths(tmp_path / "maps", photos) == [
        tmp_path / "maps" / name
        for name in [
            "dog.png",
            "dog-2.png",
            "DOG-3.png",  # dog and DOG would be one file on macOS and Windows
            "cat.png",
            "dog-2-2.png",  # the name dog-2 was taken by the second dog.jpg
            "dog-4.png",
            "noextension.png",
        ]
    ]
    assert attention_map_paths(tmp_path, []) == []
    assert not (tmp_path / "maps").exists()  # created when the maps are written, not before


def test_bad_targets_are_refused_before_any_photo_is_captioned(tmp_path) -> None:
    target = tmp_path / "maps.png"
    with pytest.raises(
        ValueError,
        match=f"^{re.escape(str(target))}: a .png file holds the maps of one photo, but there are 2 photos; "
        "name a folder instead, which gets one PNG per photo$",
    ):
        attention_map_paths(target, ["a.jpg", "b.jpg"])
    with pytest.raises(ValueError, match="but there are 0 photos"):
        attention_map_paths(target, [])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    with pytest.raises(
        ValueError, match=f"^{re.escape(str(notes))}: a file that is not a .png; name a .png file or a folder$"
    ):
        attention_map_paths(notes, ["a.jpg"])
    assert attention_map_paths(Path(tmp_path / "new-folder.d"), ["a.jpg"]) == [tmp_path / "new-folder.d" / "a.png"]


# ---- folders: every problem costs only itself -------------------------------------------------------------------


def make_troubled_folder(root: Path) -> Path:
    """A folder with two photos (one through a good symlink), a dangling symlink, a symlink loop and non-photos."""
    folder = root / "troubled"
    folder.mkdir()
    for name in ["b.jpg", "d.png", "notes.txt"]:
        (folder / name).write_bytes(b"")
    (folder / "a-link.jpg").symlink_to(folder / "b.jpg")  # a link to a photo is a photo
    (folder / "c-dangling.jpg").symlink_to(root / "gone.jpg")
    (folder / "e-loop.png").symlink_to(folder / "e-loop.png")
    (folder / "README").symlink_to(root / "gone")  # no photo's name: passed over, as notes.txt is
    (folder / "f-dir.jpg").mkdir()  # a subfolder, whatever its name
    return folder


def test_find_photos_reports_each_broken_link_in_its_place(tmp_path) -> None:
    folder = make_troubled_folder(tmp_path)
    found = find_photos([folder, "cat.jpg"])
    dangling = PathProblem(
        str(folder / "c-dangling.jpg"), f"a dangling symlink (its target {tmp_path / 'gone.jpg'} does not exist)"
    )
    loop = PathProblem(str(folder / "e-loop.png"), "a symlink loop (it never reaches a file)")
    assert found.entries == [
        str(folder / "a-link.jpg"),
        str(folder / "b.jpg"),
        dangling,  # in its place among the folder's photos, sorted by name
        str(folder / "d.png"),
        loop,
        "cat.jpg",  # files are kept as given: reading them says what is wrong
    ]
    assert found.photos == [str(folder / "a-link.jpg"), str(folder / "b.jpg"), str(folder / "d.png"), "cat.jpg"]
    assert found.problems == [dangling, loop]
    assert str(loop) == f"{folder / 'e-loop.png'}: a symlink loop (it never reaches a file)"
    with pytest.raises(ValueError, match="c-dangling.jpg: a dangling symlink"):
        find_images([folder])  # all or nothing: the first problem


def test_an_empty_folder_costs_only_itself(tmp_path) -> None:
    empty, photos = tmp_path / "empty", tmp_path / "photos"
    empty.mkdir()
    photos.mkdir()
    (empty / "readme.txt").write_text("no photos here")
    (photos / "dog.jpg").write_bytes(b"")
    found = find_photos([empty, photos, "real.jpg"])
    assert found.photos == [str(photos / "dog.jpg"), "real.jpg"]
    assert found.problems == [PathProblem(str(empty), "holds no photos (" + ", ".join(IMAGE_SUFFIXES) + " files)")]
    assert found.problems[0].sentence().startswith(f"folder {empty} holds no photos (.jpg, ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root lists any folder")
def test_an_unreadable_folder_costs_only_itself(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "dog.jpg").write_bytes(b"")
    locked.chmod(0)
    try:
        found = find_photos([locked, "real.jpg"])
    finally:
        locked.chmod(0o700)
    assert found.photos == ["real.jpg"]
    assert found.problems == [PathProblem(str(locked), "cannot be listed: PermissionError: Permission denied")]
