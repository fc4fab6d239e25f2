"""``rnncap prepare --vocab``: a data set with no train split, encoded with an existing model's vocabulary, and
scored by ``rnncap evaluate`` with that model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rnncap.apps.paths import model_path
from rnncap.apps.prepare import read_vocabulary
from rnncap.cli import main
from rnncap.data import open_store
from rnncap.models.serialization import read_model_file

pytestmark = pytest.mark.usefixtures("export_cache")  # one ONNX export per test session, in a temporary cache


def _val_only_folder(root: Path) -> Path:
    """Three photos, all in split 'val': nothing to build a vocabulary from."""
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,caption,split"]
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(root / f"p{i}.jpg")
        rows += [f"p{i}.jpg,A dog runs on the grass.,val", f"p{i}.jpg,A zebroid {i} stands.,val"]
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


def test_read_vocabulary_of_a_model_name_a_model_file_and_json(tmp_path: Path) -> None:
    shipped = read_model_file(model_path("flickr8k-lstm")).word_to_idx
    assert read_vocabulary("flickr8k-lstm") == shipped
    assert read_vocabulary(model_path("flickr8k-lstm")) == shipped
    plain, cs231n = tmp_path / "plain.json", tmp_path / "cs231n.json"
    plain.write_text(json.dumps(shipped))
    cs231n.write_text(json.dumps({"idx_to_word": sorted(shipped, key=shipped.get), "word_to_idx": shipped}))
    assert read_vocabulary(plain) == shipped and read_vocabulary(cs231n) == shipped


def test_read_vocabulary_refuses_what_is_no_vocabulary(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    with pytest.raises(FileNotFoundError, match="vocabulary file .*bad.json not found"):
        read_vocabulary(bad)
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_vocabulary(bad)
    bad.write_text(json.dumps(["a", "b"]))
    with pytest.raises(ValueError, match="bad.json must hold a JSON object of word -> integer id"):
        read_vocabulary(bad)
    bad.write_text(json.dumps({"<NULL>": 0, "dog": 1}))
    with pytest.raises(ValueError, match="bad.json must map <START> to id 1"):
        read_vocabulary(bad)
    with pytest.raises(ValueError, match="no model file or shipped model named 'no-such-model'"):
        read_vocabulary("no-such-model")


def test_prepare_without_a_train_split_suggests_vocab(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _val_only_folder(tmp_path / "photos")
    out = tmp_path / "x.h5"
    assert main(["prepare", "folder", "--root", str(root), "--out", str(out), "--no-grid"]) == 1
    error = capsys.readouterr().err
    assert "no 'train' split to build the vocabulary from" in error and "--vocab MODEL_OR_VOCAB" in error


@pytest.mark.slow  # encodes 3 photos with the shipped models' encoder, then evaluates (~10 s)
def test_prepare_with_a_models_vocab_then_evaluate_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _val_only_folder(tmp_path / "photos")
    out = tmp_path / "x.h5"
    args = ["prepare", "folder", "--root", str(root), "--out", str(out), "--vocab", "flickr8k-lstm", "--no-grid"]
    assert main([*args, "--workers", "0"]) == 0
    capsys.readouterr()
    with open_store(out) as store:
        assert store.word_to_idx == read_vocabulary("flickr8k-lstm")  # not one built from these captions
        assert "zebroid" not in store.word_to_idx
    scores = tmp_path / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                "flickr8k-lstm",
                "--data",
                str(out),
                "--split",
                "val",
                "--json",
                str(scores),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    assert "CIDEr" in capsys.readouterr().out
    assert json.loads(scores.read_text())["scores"]["CIDEr"] >= 0
