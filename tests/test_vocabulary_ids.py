"""A vocabulary that gives two words one id is refused wherever rnncap reads one: a model file, the prepared file's
writer, a prepared file whose vocabulary was altered afterwards (on open, and so before training)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import make_model, make_prepared
from rnncap.apps.fit import fit
from rnncap.cli import main
from rnncap.data import ImageRecord, create_store, open_store, prepare_records
from rnncap.models import RNNConfig, load_model
from rnncap.train import TrainConfig


def _second_word_takes_the_firsts_id(word_to_idx: dict[str, int]) -> tuple[dict[str, int], str, str, int]:
    """The vocabulary with its fifth word given the fourth word's id: (vocabulary, first, second, id)."""
    words = list(word_to_idx)
    first, second = words[4], words[5]
    return {**word_to_idx, second: word_to_idx[first]}, first, second, word_to_idx[first]


def test_a_model_file_whose_vocabulary_shares_an_id_is_refused(tmp_path: Path, capsys) -> None:
    data = make_prepared(tmp_path)
    path = make_model(data).save(tmp_path / "model.npz")
    with np.load(path) as stored:
        arrays = dict(stored)
    vocab, first, second, idx = _second_word_takes_the_firsts_id(json.loads(str(arrays["__vocab__"])))
    arrays["__vocab__"] = np.array(json.dumps(vocab))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=f"{path}: .*gives id {idx} to both '{first}' and '{second}'"):
        load_model(path)
    assert main(["evaluate", "--model", str(path), "--data", str(data), "--no-save"]) == 1
    assert f"gives id {idx} to both '{first}' and '{second}'" in capsys.readouterr().err


def test_the_prepared_files_writer_refuses_a_shared_id(tmp_path: Path) -> None:
    records = [ImageRecord("a.jpg", tmp_path / "a.jpg", "train", ("a dog runs", "a cat sits"))]
    word_to_idx, tokens, caption_image, raw = prepare_records(records, min_count=1)
    vocab, first, second, idx = _second_word_takes_the_firsts_id(word_to_idx)
    with pytest.raises(ValueError, match=f"gives id {idx} to both '{first}' and '{second}'"):
        create_store(tmp_path / "out.h5", records, vocab, tokens, caption_image, raw)
    assert not (tmp_path / "out.h5").exists()


def test_training_on_a_prepared_file_whose_vocabulary_shares_an_id_is_refused(tmp_path: Path) -> None:
    data = make_prepared(tmp_path)
    with h5py.File(data, "r+") as f:
        vocab, first, second, idx = _second_word_takes_the_firsts_id(json.loads(f.attrs["vocab"]))
        f.attrs["vocab"] = json.dumps(vocab)
    with pytest.raises(ValueError, match=f"{data}.*gives id {idx} to both '{first}' and '{second}'"):
        open_store(data)  # the store's own check on open names the file
    settings = RNNConfig(input_dim=8, wordvec_dim=8, hidden_dim=8)
    with pytest.raises(ValueError, match=f"gives id {idx} to both '{first}' and '{second}'"):
        fit(data, tmp_path / "run", settings, TrainConfig(num_epochs=1, batch_size=4, plot=False, progress=False))
