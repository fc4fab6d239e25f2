"""``rnncap prepare`` end to end: real readers, the real encoder, the HDF5 store, resume and error paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import make_cs231n
from rnncap.cli import main
from rnncap.data import load_references, load_split, open_store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COCO_MINI = SHARED / "coco-mini"
FLICKR = SHARED / "flickr8k"
CS231N_VOCAB = SHARED / "cs231n" / "coco2014_vocab.json"
FAST = ["--encoder", "efficientnet-lite0", "--workers", "0", "--batch-size", "4"]  # the small encoder, one process
pytestmark = pytest.mark.usefixtures("export_cache")  # one ONNX export per test session, in a temporary cache


def _photo_folder(root: Path) -> Path:
    """Five photos (two formats, one grey, one wide) and one file that only pretends to be a JPEG."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i, (mode, size, suffix) in enumerate(
        [
            ("RGB", (64, 48), "jpg"),
            ("RGB", (40, 40), "png"),
            ("L", (50, 70), "jpg"),
            ("RGB", (200, 20), "png"),
            ("RGB", (30, 30), "jpg"),
        ]
    ):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3 if mode == "RGB" else 1), dtype=np.uint8)
        Image.fromarray(pixels.squeeze()).save(root / f"photo{i}.{suffix}")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    rows = ["image,caption,split"]
    rows += [f"photo{i}.{'jpg' if i in (0, 2, 4) else 'png'},A red dog runs on the grass {i}.,train" for i in range(4)]
    rows += ["photo4.jpg,A dog on the grass.,val", "broken.jpg,A broken photo of a dog.,val"]
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


def test_prepare_folder_skips_the_broken_photo_and_resumes(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    out = tmp_path / "prepared.h5"
    args = ["prepare", "folder", "--root", str(root), "--out", str(out), "--min-count", "1", *FAST]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "6 images (train 4, val 2), 6 captions" in printed
    assert "encoded 5 photos" in printed
    assert "skipped unreadable photo broken.jpg" in printed

    train = load_split(out, "train")
    assert train.features.shape == (4, 1280) and train.features.dtype == np.float32
    assert np.isfinite(train.features).all() and train.features.std() > 0
    val = load_split(out, "val")
    assert val.features.shape == (1, 1280) and len(val) == 1  # the broken photo and its caption are left out
    assert list(load_references(out, "val").values()) == [["A dog on the grass."]]
    with open_store(out) as store:
        assert store.encoder == "efficientnet-lite0"
        assert store.failures().keys() == {"broken.jpg"}

    assert main(args) == 0  # the same command again: nothing left to encode
    printed = capsys.readouterr().out
    assert "already held this data" in printed and "encoded 0 photos" in printed


def test_prepare_refuses_another_encoder_without_overwrite(tmp_path, capsys):
    root = _photo_folder(tmp_path / "photos")
    out = tmp_path / "prepared.h5"
    base = ["prepare", "folder", "--root", str(root), "--out", str(out), "--min-count", "1", "--no-grid"]
    assert main([*base, *FAST]) == 0
    capsys.readouterr()
    assert main([*base, "--encoder", "efficientnet-lite2", "--workers", "0"]) == 1
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.skipif(not COCO_MINI.is_dir(), reason=f"real coco-mini data not found at {COCO_MINI}")
def test_prepare_real_coco_mini(tmp_path, capsys):
    out = tmp_path / "coco-mini.h5"
    args = ["prepare", "coco", "--root", str(COCO_MINI), "--year", "2017", "--splits", "train", "--out", str(out)]
    assert main([*args, *FAST]) == 0
    printed = capsys.readouterr().out
    assert "80 images (train 80), 400 captions" in printed and "encoded 80 photos" in printed
    train = load_split(out, "train")
    assert train.features.shape == (80, 1280) and len(train) == 400
    with open_store(out) as store:
        assert store.word_to_idx["<UNK>"] == 3 and "a" in store.word_to_idx


def test_prepare_coco_partial_download_reports_the_missing_photos(tmp_path, capsys):
    """A COCO json naming photos that are not on disk: prepare lists them and prepares the rest."""
    root = tmp_path / "coco"
    rng = np.random.default_rng(0)
    for split, ids in (("train", [1, 2, 3]), ("val", [7, 8])):
        images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in ids]
        (root / f"{split}2017").mkdir(parents=True)
        for i in ids[:-1]:  # the last photo of each split was never downloaded
            Image.fromarray(rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)).save(
                root / f"{split}2017/{i:012d}.jpg"
            )
        annotations = [
            {"id": 10 * i + k, "image_id": i, "caption": f"A dog and a cat {k}."} for i in ids for k in (0, 1)
        ]
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"captions_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": annotations})
        )
    out = tmp_path / "coco.h5"
    args = ["prepare", "coco", "--root", str(root), "--year", "2017", "--out", str(out), "--min-count", "1"]
    assert main([*args, "--no-grid", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "3 images (train 2, val 1), 6 captions" in printed and "2 skipped" in printed
    assert "skipped 2 entries of the data set:" in printed
    assert f"000000000003.jpg: photo not found in {root / 'train2017'}" in printed
    assert f"000000000008.jpg: photo not found in {root / 'val2017'}" in printed
    assert load_split(out, "train").features.shape == (2, 1280)


@pytest.mark.skipif(not FLICKR.is_dir(), reason=f"real Flickr8k data not found at {FLICKR}")
def test_prepare_flickr8k_names_the_withheld_split(tmp_path, capsys):
    out = tmp_path / "flickr.h5"
    assert main(["prepare", "flickr8k", "--root", str(FLICKR), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert "test" in error and "--splits train,dev" in error
    assert not out.exists()


@pytest.mark.skipif(not CS231N_VOCAB.is_file(), reason=f"CS231n vocabulary not found at {CS231N_VOCAB}")
def test_prepare_cs231n_copies_features_and_captions(tmp_path, capsys):
    root = make_cs231n(tmp_path / "coco_captioning", CS231N_VOCAB, {"train": (6, 20), "val": (3, 7)})
    out = tmp_path / "cs231n.h5"
    assert main(["prepare", "cs231n", "--root", str(root), "--out", str(out)]) == 0
    assert "9 images (train 6, val 3), 27 captions" in capsys.readouterr().out
    train = load_split(out, "train")
    assert train.features.shape == (6, 512) and train.captions.shape == (20, 17)
    with open_store(out) as store:
        assert store.encoder == "cs231n-vgg16-fc7-pca" and len(store.word_to_idx) == 1004
    vocab = json.loads(CS231N_VOCAB.read_text())["idx_to_word"]
    first = next(iter(load_references(out, "train").values()))[0]
    assert all(word in vocab for word in first.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "flickr8k", "--root", "/no/such/folder", "--out", "x.h5"], "/no/such/folder"),
        (["prepare", "folder", "--root", "/no/such/folder", "--out", "x.h5"], "/no/such/folder"),
        (["prepare", "cs231n", "--root", "/no/such/folder", "--out", "x.h5"], "/no/such/folder"),
    ],
)
def test_missing_folders_are_one_clear_line(args, message, capsys):
    assert main(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("rnncap prepare: error:") and message in error and "Traceback" not in error


def test_bad_option_values_are_refused(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "folder", "--root", ".", "--out", "x.h5", "--batch-size", "0"])
    assert "must be a positive integer" in capsys.readouterr().err


def test_installed_command_runs():
    import subprocess
    import sys

    command = Path(sys.executable).parent / "rnncap"  # installed by `pip install -e .` (the Makefile does it)
    done = subprocess.run([str(command), "prepare", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "flickr8k" in done.stdout and "cs231n" in done.stdout


@pytest.mark.parametrize("source", ["flickr8k", "folder", "cs231n"])
def test_an_unusable_out_is_refused_before_the_data_set_is_read(source, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    for out, message in [
        (tmp_path / "folder", f"--out {tmp_path / 'folder'} is a folder: expected the name of a file to write"),
        (tmp_path / "file" / "x.h5", f"cannot create its folder, {tmp_path / 'file'} is a file, not a folder"),
    ]:
        # The root does not exist either: the output is checked first, so its error is the one shown.
        assert main(["prepare", source, "--root", "/no/such/folder", "--out", str(out)]) == 1
        error = capsys.readouterr().err
        assert error.startswith("rnncap prepare: error: ") and message in error and "/no/such" not in error


def test_the_prepare_api_checks_its_out_first(tmp_path):
    from rnncap.apps.outputs import OutputError
    from rnncap.apps.prepare import prepare_cs231n

    with pytest.raises(OutputError, match=f"out {tmp_path} is a folder"):
        prepare_cs231n(tmp_path / "nowhere", tmp_path)


def test_every_command_states_the_rule_for_outputs(capsys):
    for command in (["--help"], ["evaluate", "--help"], ["prepare", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        assert "No command replaces an existing file without --overwrite" in " ".join(capsys.readouterr().out.split())
