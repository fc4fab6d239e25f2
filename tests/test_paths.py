"""rnncap.apps.paths: where each photo's attention maps go (model names and folders: test_captioner.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnncap.apps.paths import attention_map_paths


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
