"""Several data sets, one model (rnncap.apps.joint, fit and `rnncap train --data A --data B`): one vocabulary from
the union of the train captions, each data set validated and scored on its own, the best epoch by the mean."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import DIM, LOCATIONS, TOY_ENCODER
from rnncap.apps.fit import fit
from rnncap.apps.joint import read_joint
from rnncap.apps.run_config import load_run_config
from rnncap.cli import main
from rnncap.data import ImageRecord, StoreError, create_store, open_store, prepare_records
from rnncap.models import AttentionConfig, RNNConfig, load_model
from rnncap.text import build_vocab, decode_captions, tokenize
from rnncap.train import TrainConfig

SMALL = RNNConfig(cell_type="lstm", wordvec_dim=8, hidden_dim=16, dropout=0.0)
DOGS = ["A dog runs on the grass.", "A brown dog jumps.", "Two dogs play in the park.", "A dog swims in a lake."]
CATS = ["A cat sits on a sofa.", "A cat sleeps in the sun.", "A kitten plays with a ball.", "A bus on the street."]


def _store(
    path: Path,
    name: str,
    captions: list[str],
    val_split: str,
    *,
    encoder: str = TOY_ENCODER,
    max_length: int = 6,
    grid: bool = True,
    seed: int = 0,
) -> Path:
    """A prepared file named ``name``: 2 train photos and 2 photos of ``val_split``, two captions each, its own
    vocabulary (min count 1), random pooled and grid features said to come from ``encoder``."""
    records = [
        ImageRecord(f"{name}-{i}", path.parent / f"{name}-{i}.jpg", "train" if i < 2 else val_split, (c, c.upper()))
        for i, c in enumerate(captions)
    ]
    create_store(path, records, *prepare_records(records, min_count=1, max_length=max_length), name=name)
    with open_store(path, writable=True) as store:
        store.begin_features(encoder, pooled_dim=DIM, grid_shape=(LOCATIONS, DIM) if grid else None)
        rng = np.random.default_rng(seed)
        pooled, grids = rng.standard_normal((4, DIM)), rng.standard_normal((4, LOCATIONS, DIM))
        store.write_features(np.arange(4), pooled, grids if grid else None)
    return path


@pytest.fixture
def two(tmp_path: Path) -> list[Path]:
    """A Flickr-like file validated on "dev" and a COCO-like one that has "val" only."""
    return [
        _store(tmp_path / "dogs.h5", "dogset", DOGS, "dev"),
        _store(tmp_path / "cats.h5", "catset", CATS, "val", seed=1),
    ]


def _config(**overrides) -> TrainConfig:
    settings = {"num_epochs": 2, "batch_size": 4, "optim_config": {"learning_rate": 5e-2}, "lr_decay": 1.0}
    return TrainConfig(**settings | {"patience": None, "progress": False, "plot": False} | overrides)


def test_read_joint_builds_one_vocabulary_and_offsets_the_photos(two: list[Path]) -> None:
    joint = read_joint(two, "train", "dev", grid=False, min_count=1)
    train_captions = [c for text in DOGS[:2] + CATS[:2] for c in (text, text.upper())]
    assert joint.word_to_idx == build_vocab([tokenize(c) for c in train_captions], min_count=1)
    assert "kitten" not in joint.word_to_idx  # a word of a validation caption only
    assert joint.train.features.shape == (4, DIM) and len(joint.train) == 8
    np.testing.assert_array_equal(joint.train.image_idxs, [0, 0, 1, 1, 2, 2, 3, 3])  # the second file's offset
    idx_to_word = {i: w for w, i in joint.word_to_idx.items()}
    assert decode_captions(joint.train.captions[[0, 4]], idx_to_word) == [
        "a dog runs on the grass",
        "a cat sits on a sofa",
    ]
    with open_store(two[1]) as store:
        np.testing.assert_array_equal(joint.train.features[2:], store.load_split("train").features)
    assert [(p.name, p.split, len(p.data.features)) for p in joint.parts] == [
        ("dogset", "dev", 2),
        ("catset", "val", 2),
    ]
    assert joint.parts[1].references[0] == [CATS[2], CATS[2].upper()]
    assert joint.val.features.shape == (4, DIM) and np.array_equal(joint.val.image_idxs, [0, 0, 1, 1, 2, 2, 3, 3])
    assert read_joint(two, "train", "dev", grid=False).word_to_idx.keys() == {
        "<NULL>",
        "<START>",
        "<END>",
        "<UNK>",
        "a",
    }  # min count 5
    grid = read_joint(two, "train", "dev", grid=True, min_count=1)
    assert grid.train.features.shape == (4, LOCATIONS, DIM) and grid.train.features.dtype == np.float16


def test_read_joint_refuses_files_that_do_not_go_together(two: list[Path], tmp_path: Path) -> None:
    other = _store(tmp_path / "other.h5", "other", CATS, "val", encoder="another-cnn")
    with pytest.raises(ValueError, match=r"dogs.h5 holds features of 'toy-cnn', .*other.h5 of 'another-cnn'"):
        read_joint([two[0], other], "train", "dev", grid=False)
    longer = _store(tmp_path / "longer.h5", "longer", CATS, "val", max_length=9)
    with pytest.raises(ValueError, match=r"max_length 6, .*longer.h5 with 9: prepare them with the same --max-length"):
        read_joint([two[0], longer], "train", "dev", grid=False)
    pooled = _store(tmp_path / "pooled.h5", "pooled", CATS, "val", grid=False)
    with pytest.raises(StoreError, match=r"pooled.h5 holds no grid features.*without --no-grid"):
        read_joint([two[0], pooled], "train", "dev", grid=True)
    with pytest.raises(StoreError, match=r"dogs.h5 has no split 'test'"):
        read_joint(two, "train", "test", grid=False)
    same = _store(tmp_path / "dogs2.h5", "dogset", CATS, "val")
    assert [p.name for p in read_joint([two[0], same], "train", "dev", grid=False).parts] == ["dogs", "dogs2"]


def test_fit_on_two_data_sets_scores_each_and_chooses_by_the_mean(two: list[Path], tmp_path: Path) -> None:
    result = fit(two, tmp_path / "run", SMALL, _config(), min_count=1)
    metrics = result.history["metrics"]
    assert set(metrics[0]) == {"dogset/BLEU-4", "dogset/CIDEr", "catset/BLEU-4", "catset/CIDEr", "BLEU-4", "CIDEr"}
    for m in metrics:
        assert m["CIDEr"] == pytest.approx((m["dogset/CIDEr"] + m["catset/CIDEr"]) / 2)
    assert result.best_epoch == 1 + int(np.argmax([m["CIDEr"] for m in metrics]))
    best = load_model(result.best_path)
    assert best.metadata["data"] == "dogs.h5+cats.h5" and best.metadata["data_sets"] == ["dogset", "catset"]
    assert best.metadata["training"]["val_split"] == {"dogset": "dev", "catset": "val"}
    assert best.word_to_idx == read_joint(two, "train", "dev", grid=False, min_count=1).word_to_idx


def test_a_joint_run_continues_only_on_the_same_data_sets_in_order(two: list[Path], tmp_path: Path) -> None:
    whole = fit(two, tmp_path / "whole", SMALL, _config(num_epochs=2), min_count=1)
    fit(two, tmp_path / "parts", SMALL, _config(num_epochs=1), min_count=1)
    continued = fit(two, tmp_path / "parts", SMALL, _config(num_epochs=2), min_count=1)
    assert continued.resumed and continued.history["metrics"] == whole.history["metrics"]
    with pytest.raises(ValueError, match=r"the data sets \['dogset', 'catset'\] in the run, .*\['catset', 'dogset'\]"):
        fit(two[::-1], tmp_path / "parts", SMALL, _config(num_epochs=3), min_count=1)
    with pytest.raises(ValueError, match=r"the data sets \['dogset', 'catset'\] in the run, one data file"):
        fit(two[0], tmp_path / "parts", SMALL, _config(num_epochs=3))
    fit(two[0], tmp_path / "single", SMALL, _config(num_epochs=1))
    with pytest.raises(ValueError, match=r"the data: one data file in the run, the data sets"):
        fit(two, tmp_path / "single", SMALL, _config(num_epochs=2), min_count=1)


def test_train_cli_several_data_then_evaluate_on_one(two: list[Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(two[0]), "--data", str(two[1]), "--out", str(out), "--min-count", "1"]
    assert main([*args, "--attention", "--wordvec", "8", "--hidden", "16", "--epochs", "1", "--batch-size", "4"]) == 0
    printed = capsys.readouterr().out
    assert "dogset/BLEU-4  dogset/CIDEr  catset/BLEU-4  catset/CIDEr  BLEU-4  CIDEr" in printed
    assert "<- best" in printed
    # The model's vocabulary is the union, not cats.h5's; the references are raw captions, so evaluate works.
    with open_store(two[1]) as store:
        assert load_model(out / "best.npz").word_to_idx != store.word_to_idx
    scores = tmp_path / "scores.json"
    evaluate = ["evaluate", "--model", str(out / "best.npz"), "--data", str(two[1]), "--split", "val"]
    assert main([*evaluate, "--json", str(scores), "--out", str(tmp_path / "ev"), "--beam", "1"]) == 0
    assert json.loads(scores.read_text())["scores"]["CIDEr"] >= 0


def test_run_files_and_default_folders_of_several_data_sets(tmp_path: Path) -> None:
    run_file = tmp_path / "run.toml"
    run_file.write_text('data = ["data/flickr8k.h5", "data/coco.h5"]\nattention = true\nmin_count = 3\n')
    run = load_run_config(run_file)
    assert run.data_files == (Path("data/flickr8k.h5"), Path("data/coco.h5")) and run.min_count == 3
    assert run.run_dir == Path("runs/flickr8k+coco-attention") and isinstance(run.settings, AttentionConfig)
    one = load_run_config(overrides={"data": [Path("flickr8k.h5")]})
    assert one.data == Path("flickr8k.h5") and one.run_dir == Path("runs/flickr8k-lstm")  # one file: as before
    run_file.write_text("data = []\n")
    with pytest.raises(ValueError, match=r"run.toml: data must be a file name or a list of file names, got \[\]"):
        load_run_config(run_file)
    run_file.write_text("data = [1, 2]\n")
    with pytest.raises(ValueError, match="data must be a file name or a list of file names"):
        load_run_config(run_file)


def test_one_file_without_a_dev_split_is_validated_on_val(two: list[Path], tmp_path: Path) -> None:
    """COCO's prepared files have train and val: the default "dev" falls back to "val"; another split must exist."""
    result = fit(two[1], tmp_path / "run", SMALL, _config(num_epochs=1))
    assert set(result.history["metrics"][0]) == {"BLEU-4", "CIDEr"}  # one file: the metrics as ever
    assert load_model(result.best_path).metadata["training"]["val_split"] == "val"
    assert "data_sets" not in load_model(result.best_path).metadata
    with pytest.raises(StoreError, match=r"cats.h5 has no split 'test'"):
        fit(two[1], tmp_path / "other", SMALL, _config(num_epochs=1), val_split="test")
