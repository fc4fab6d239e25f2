"""``rnncap caption``'s outputs (--html, --attention) follow the one rule: no existing file replaced without
--overwrite, and an unusable output refused before the model loads or any photo is captioned."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from helpers import tiny_model
from rnncap.cli import main


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "dog.jpg"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return tiny_model(metadata={"encoder": "efficientnet-lite0"}).save(tmp_path / "model.npz")


def test_an_existing_gallery_is_refused_unless_overwrite(model_file: Path, photo: Path, tmp_path: Path, capsys) -> None:
    gallery = tmp_path / "gallery.html"
    gallery.write_text("yesterday's gallery")
    args = ["caption", str(photo), "--model", str(model_file), "--html", str(gallery)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert (
        captured.err
        == f"rnncap caption: error: --html {gallery} already exists: give --overwrite (overwrite=True) to replace it\n"
    )
    assert captured.out == "" and gallery.read_text() == "yesterday's gallery"  # nothing captioned
    assert main([*args, "--overwrite"]) == 0
    assert "<figure>" in gallery.read_text()


@pytest.mark.parametrize(
    ("option", "where", "message"),
    [
        ("--html", "folder", "--html {path} is a folder"),
        ("--html", "file/gallery.html", "--html {path}: cannot create its folder, {root}/file is a file, not a folder"),
        ("--html", "dog.jpg", "--html {path} is an input of this command"),
        ("--attention", "folder.png", "--attention {path} is a folder"),
    ],
)
def test_an_unusable_output_is_refused_before_captioning(
    model_file: Path, photo: Path, tmp_path: Path, capsys, option: str, where: str, message: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("x")
    before = photo.read_bytes()
    path = tmp_path / where
    assert main(["caption", str(photo), "--model", str(model_file), option, str(path), "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rnncap caption: error: {message.format(path=path, root=tmp_path)}")
    assert captured.out == "" and photo.read_bytes() == before
