"""``rnncap caption`` end to end: output formats, folders, unreadable photos, model errors and exit statuses,
attention maps."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_bad_files, make_photos, tiny_attention_model, tiny_model
from rnncap import Captioner
from rnncap.cli import main

pytestmark = pytest.mark.usefixtures("export_cache")  # the ONNX export goes to a temporary cache


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("model") / "tiny.npz")


@pytest.fixture(scope="module")
def attention_model_file(tmp_path_factory) -> Path:
    return tiny_attention_model().save(tmp_path_factory.mktemp("model") / "attention.npz")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return make_photos(tmp_path_factory.mktemp("photos"))


def caption(capsys, *args: str | Path) -> tuple[int, str, str]:
    """Run ``rnncap caption ARGS``: exit status, stdout, stderr."""
    status = main(["caption", *map(str, args)])
    printed = capsys.readouterr()
    return status, printed.out, printed.err


def test_one_tab_separated_line_per_photo_in_order(model_file, photos, capsys) -> None:
    paths = [photos["png"], photos["jpeg"], photos["gray"]]
    status, out, err = caption(capsys, *paths, "--model", model_file)
    assert status == 0 and err == ""
    expected = Captioner.from_pretrained(model_file).caption_many(paths)
    assert out.splitlines() == [f"{path}\t{text}" for path, text in zip(paths, expected, strict=True)]


def test_folders_expand_to_their_photos_sorted(model_file, photos, capsys) -> None:
    folder = photos["jpeg"].parent
    status, out, _ = caption(capsys, folder, "--model", model_file, "--batch-size", "4")
    assert status == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == sorted(str(p) for p in photos.values())


def test_json_lists_every_photo(model_file, photos, tmp_path, capsys) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])["corrupt"]
    status, out, err = caption(capsys, photos["jpeg"], bad, "--model", model_file, "--json", "--beam", "1")
    assert status == 1
    listed = json.loads(out)
    expected = Captioner.from_pretrained(model_file).caption(photos["jpeg"], beam_size=1)
    assert listed[0] == {"image": str(photos["jpeg"]), "caption": expected}
    assert listed[1]["image"] == str(bad) and listed[1]["caption"] is None and "OSError" in listed[1]["error"]
    assert err == f"rnncap caption: error: {bad}: {listed[1]['error']}\n"


def test_unreadable_photos_are_one_line_each_and_the_rest_captioned(model_file, photos, tmp_path, capsys) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])
    status, out, err = caption(capsys, bad["text"], photos["png"], bad["missing"], photos["gif"], "--model", model_file)
    assert status == 1
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(photos["png"]), str(photos["gif"])]
    errors = err.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"rnncap caption: error: {bad['text']}: UnidentifiedImageError: ")
    assert errors[1].startswith(f"rnncap caption: error: {bad['missing']}: FileNotFoundError: ")


def test_html_gallery_of_the_captioned_photos(model_file, photos, tmp_path, capsys) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])["text"]
    gallery = tmp_path / "out" / "gallery.html"
    status, out, err = caption(capsys, photos["png"], bad, "--model", model_file, "--html", gallery)
    assert status == 1 and f"wrote {gallery}" in err
    page = gallery.read_text()
    first = out.splitlines()[0].split("\t")[1]
    assert page.count("data:image/jpeg;base64,") == 1  # the readable photo, embedded
    assert html.escape(first) in page and "unreadable" in page and "beam search, width 3" in page


def test_options_reach_the_captioner(model_file, photos, capsys) -> None:
    status, out, _ = caption(capsys, photos["jpeg"], "--model", model_file, "--max-length", "3", "--beam", "5")
    assert status == 0
    expected = Captioner.from_pretrained(model_file).caption(photos["jpeg"], beam_size=5, max_length=3)
    assert out == f"{photos['jpeg']}\t{expected}\n" and len(expected.split()) == 3


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("/no/such/model.npz", "model file /no/such/model.npz does not exist"),
        ("no-such-model", "no model file or shipped model named 'no-such-model'"),
        (None, "is missing from this installation; pass a model file instead (rnncap caption --model PATH)"),
    ],
)
def test_model_errors_are_one_clear_line(model, message, photos, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("rnncap.apps.paths.ASSETS", tmp_path)  # an installation without the shipped model
    status, out, err = caption(capsys, photos["jpeg"], *(["--model", model] if model else []))
    assert status == 1 and out == ""
    assert err.startswith("rnncap caption: error: ") and message in err and len(err.splitlines()) == 1


def test_an_empty_folder_is_an_error(model_file, tmp_path, capsys) -> None:
    status, _, err = caption(capsys, tmp_path, "--model", model_file)
    assert status == 1 and f"folder {tmp_path} holds no photos" in err


NO_PHOTOS = "(.jpg, .jpeg, .png, .webp, .gif, .bmp, .tif, .tiff files)"


def test_an_empty_folder_costs_only_itself(model_file, photos, tmp_path, capsys) -> None:
    empty = tmp_path / "emptydir"
    empty.mkdir()
    status, out, err = caption(capsys, empty, photos["jpeg"], "--model", model_file)
    assert status == 1
    assert out == f"{photos['jpeg']}\t{Captioner.from_pretrained(model_file).caption(photos['jpeg'])}\n"
    assert err.splitlines() == [f"rnncap caption: error: {empty}: holds no photos {NO_PHOTOS}"]


def test_broken_symlinks_in_a_folder_cost_only_themselves(model_file, photos, tmp_path, capsys) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.jpg").symlink_to(photos["jpeg"])
    (folder / "b-loop.jpg").symlink_to(folder / "b-loop.jpg")
    (folder / "c-dangling.png").symlink_to(tmp_path / "deleted.png")
    (folder / "d.png").symlink_to(photos["png"])
    status, out, err = caption(capsys, folder, "--model", model_file, "--json")
    assert status == 1
    listed = json.loads(out)
    assert [item["image"] for item in listed] == [
        str(folder / name) for name in ["a.jpg", "b-loop.jpg", "c-dangling.png", "d.png"]
    ]
    assert [item["caption"] is None for item in listed] == [False, True, True, False]
    assert err.splitlines() == [
        f"rnncap caption: error: {folder / 'b-loop.jpg'}: a symlink loop (it never reaches a file)",
        f"rnncap caption: error: {folder / 'c-dangling.png'}: a dangling symlink "
        f"(its target {tmp_path / 'deleted.png'} does not exist)",
    ]


def test_nothing_left_to_caption_is_a_clear_error(model_file, tmp_path, capsys) -> None:
    empty, dangling = tmp_path / "empty", tmp_path / "links"
    empty.mkdir()
    dangling.mkdir()
    (dangling / "gone.jpg").symlink_to(tmp_path / "gone.jpg")
    status, out, err = caption(capsys, empty, dangling, "--model", model_file)
    assert status == 1 and out == ""
    assert err.splitlines() == [
        f"rnncap caption: error: {empty}: holds no photos {NO_PHOTOS}",
        f"rnncap caption: error: {dangling / 'gone.jpg'}: a dangling symlink "
        f"(its target {tmp_path / 'gone.jpg'} does not exist)",
        f"rnncap caption: error: nothing to caption: folder {empty} holds no photos {NO_PHOTOS} (and 1 more above)",
    ]


def test_attention_maps_skip_the_problems(attention_model_file, photos, tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    maps = tmp_path / "maps.png"  # one photo among the arguments: a .png file holds its maps
    status, out, err = caption(capsys, empty, photos["jpeg"], "--model", attention_model_file, "--attention", maps)
    assert status == 1 and out.startswith(f"{photos['jpeg']}\t") and maps.is_file()
    assert err.splitlines() == [
        f"rnncap caption: error: {empty}: holds no photos {NO_PHOTOS}",
        f"wrote {maps}",
    ]


def test_caption_files_expands_folders_and_reports_their_problems(model_file, photos, tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    captioner = Captioner.from_pretrained(model_file)
    results = list(captioner.caption_files([empty, photos["jpeg"].parent, photos["png"]], batch_size=3))
    folder_photos = sorted(str(p) for p in photos.values())
    assert [r.image for r in results] == [str(empty), *folder_photos, str(photos["png"])]
    assert results[0].caption is None and results[0].error.startswith("holds no photos (")
    assert [r.caption for r in results[1:]] == captioner.caption_many([*folder_photos, photos["png"]])


def test_bad_option_values_and_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["caption", "photo.jpg", "--beam", "0"])
    assert "must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["caption", "--help"])
    help_text = capsys.readouterr().out
    assert "the path, a tab, the caption" in help_text and "--json" in help_text and "exit status" in help_text
    assert "--attention MAPS.png|FOLDER" in help_text and "centred square" in help_text


# ---- attention maps ---------------------------------------------------------------------------------------------


def assert_same_picture(path: Path, expected: Image.Image) -> None:
    """The PNG file shows ``expected``, up to rounding: weights computed in another batch differ in the last bits."""
    with Image.open(path) as written:
        assert written.format == "PNG" and written.size == expected.size
        assert np.abs(np.asarray(written, dtype=int) - np.asarray(expected)).max() <= 1


def test_attention_maps_of_one_photo(attention_model_file, photos, tmp_path, capsys) -> None:
    maps = tmp_path / "out" / "maps.png"
    status, out, err = caption(capsys, photos["jpeg"], "--model", attention_model_file, "--attention", maps)
    assert status == 0 and err == f"wrote {maps}\n"
    attended = Captioner.from_pretrained(attention_model_file).caption_with_attention(photos["jpeg"])
    assert out == f"{photos['jpeg']}\t{attended.caption}\n"  # the captions are the same with or without maps
    assert_same_picture(maps, attended.draw())


def test_attention_maps_of_several_photos_go_to_a_folder(attention_model_file, photos, tmp_path, capsys) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])["corrupt"]
    paths = [photos["jpeg"], photos["png"], bad, photos["gray"], photos["webp"]]  # photo.jpg, photo.png: one name
    maps = tmp_path / "maps"
    args = ["--model", attention_model_file, "--attention", maps, "--json", "--batch-size", "2"]
    status, out, err = caption(capsys, *paths, *args)
    assert status == 1 and err.splitlines()[-1] == f"wrote 4 attention maps to {maps}"
    listed = json.loads(out)
    assert [item.get("attention") for item in listed] == [
        str(maps / "photo.png"),
        str(maps / "photo-2.png"),
        None,  # unreadable: no caption, no map
        str(maps / "gray.png"),
        str(maps / "photo-3.png"),
    ]
    assert sorted(p.name for p in maps.iterdir()) == ["gray.png", "photo-2.png", "photo-3.png", "photo.png"]
    attended = Captioner.from_pretrained(attention_model_file).caption_with_attention(photos["png"])
    assert listed[1]["caption"] == attended.caption
    assert_same_picture(maps / "photo-2.png", attended.draw())


def test_the_gallery_shows_the_attention_maps(attention_model_file, photos, tmp_path, capsys) -> None:
    gallery = tmp_path / "gallery.html"
    args = ["--model", attention_model_file, "--attention", tmp_path / "maps", "--html", gallery]
    status, _, err = caption(capsys, photos["jpeg"], photos["gif"], *args)
    assert status == 0 and f"wrote {gallery}" in err
    page = gallery.read_text()
    assert page.count('<img class="extra"') == 2 and "where the model looked for each word" in page
    caption(capsys, photos["jpeg"], "--model", attention_model_file, "--html", gallery, "--overwrite")
    assert '<img class="extra"' not in gallery.read_text()  # maps only when asked for


def test_attention_errors_come_before_any_caption(model_file, attention_model_file, photos, tmp_path, capsys) -> None:
    maps = tmp_path / "maps.png"
    status, out, err = caption(capsys, photos["jpeg"], "--model", model_file, "--attention", maps)
    assert status == 1 and out == "" and not maps.exists()
    assert err == (
        "rnncap caption: error: the model (CaptioningRNN) does not attend, so it has no attention maps: only an "
        "attention model (AttentionCaptioner) says where it looked for each word\n"
    )
    status, out, err = caption(
        capsys, photos["jpeg"], photos["png"], "--model", attention_model_file, "--attention", maps
    )
    assert status == 1 and out == "" and not maps.exists()
    assert f"--attention {maps}: a .png file holds the maps of one photo, but there are 2 photos; name a folder" in err
    notes = tmp_path / "notes.txt"
    notes.write_text("not a folder")
    status, out, err = caption(capsys, photos["jpeg"], "--model", attention_model_file, "--attention", notes)
    assert status == 1 and out == "" and "a file that is not a .png; name a .png file or a folder" in err
