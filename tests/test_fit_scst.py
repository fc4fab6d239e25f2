"""`rnncap train --scst --init MODEL`: self-critical fine-tuning of a trained model on its data, with the keep-best,
resume and refusals of every run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from helpers import make_prepared
from rnncap.apps.fit import fit
from rnncap.apps.run_config import load_run_config
from rnncap.cli import main
from rnncap.metrics.evaluate import CUT_OFF_ENDINGS
from rnncap.models import RNNConfig, load_model
from rnncap.train import TrainConfig

SMALL = RNNConfig(cell_type="lstm", wordvec_dim=8, hidden_dim=16, dropout=0.0)
BASE = TrainConfig(
    num_epochs=1, batch_size=4, optim_config={"learning_rate": 5e-2}, patience=None, progress=False, plot=False
)
SCST = ["--scst", "--samples", "2", "--scst-max-length", "6", "--batch-size", "2", "--lr", "1e-3"]


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path]:
    """A prepared file and a model trained on it (one epoch)."""
    data = make_prepared(tmp_path)
    return data, fit(data, tmp_path / "xe", SMALL, BASE).best_path


def _two(tmp_path: Path) -> list[Path]:
    """Two prepared files (in folders a and b), to train one model on both."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    return [make_prepared(tmp_path / "a"), make_prepared(tmp_path / "b")]


def _train(*args: object) -> None:
    assert main(["train", *map(str, args)]) == 0


def _refusal(capsys, *args: object) -> str:
    """The message of a `rnncap train` that is refused."""
    capsys.readouterr()
    assert main(["train", *map(str, args)]) == 1
    return capsys.readouterr().err


def test_scst_fine_tunes_the_init_model_and_keeps_its_best_epoch(trained, tmp_path: Path, capsys) -> None:
    data, init = trained
    out = tmp_path / "scst"
    _train("--data", data, "--init", init, "--out", out, "--epochs", "1", *SCST)
    printed = capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert "fine-tuning" in printed and "epoch  reward  baseline  val_loss" in printed and "train_loss" not in printed
    reward, baseline = 100 * history["train_reward"][0], 100 * history["train_baseline"][0]
    assert f"    1  {reward:6.1f}  {baseline:8.1f}" in printed  # the epoch's row, on the 0-100 scale
    best = load_model(out / "best.npz")
    assert best.settings == load_model(init).settings and best.word_to_idx == load_model(init).word_to_idx
    assert best.metadata["training"]["val_greedy"]["CIDEr"] == history["metrics"][0]["CIDEr"]
    assert len(history["train_reward"]) == 1 and len(history["iteration_reward"]) == 2  # 4 photos, 2 a step
    assert best.metadata["scst_init"]["path"] == str(init)
    assert best.blocked_endings == tuple(sorted(CUT_OFF_ENDINGS)) and not load_model(init).blocked_endings
    assert any(not np.array_equal(best.params[n], load_model(init).params[n]) for n in best.params)

    _train("--data", data, "--init", init, "--out", out, "--epochs", "2", *SCST)  # the same command: continues
    resumed = json.loads((out / "history.json").read_text())
    assert resumed["epoch"] == [1, 2] and resumed["iteration_reward"][:2] == history["iteration_reward"]


def test_a_rerun_with_other_scst_settings_or_init_weights_is_refused(trained, tmp_path: Path, capsys) -> None:
    data, init = trained
    out = tmp_path / "scst"
    _train("--data", data, "--init", init, "--out", out, "--epochs", "1", *SCST)
    assert "num_samples" in _refusal(
        capsys, "--data", data, "--init", init, "--out", out, "--epochs", "2", *SCST, "--samples", "3"
    )
    other = fit(data, tmp_path / "xe2", SMALL, replace(BASE, seed=1)).best_path
    assert "other weights" in _refusal(capsys, "--data", data, "--init", other, "--out", out, "--epochs", "2", *SCST)


def test_scst_refuses_another_vocabulary_and_model_options(trained, tmp_path: Path, capsys) -> None:
    data, init = trained
    (tmp_path / "b").mkdir()
    other = ["--data", data, "--data", make_prepared(tmp_path / "b"), "--min-count", "100"]  # no word kept
    assert "vocabulary is not the one of the init model" in _refusal(
        capsys, *other, "--init", init, "--out", tmp_path / "a", *SCST
    )
    assert "leave out hidden" in _refusal(capsys, "--data", data, "--init", init, "--hidden", "32", *SCST)
    other_encoder = load_model(init)
    other_encoder.metadata["encoder"] = "efficientnet-lite0"
    message = _refusal(
        capsys, "--data", data, "--init", other_encoder.save(tmp_path / "lite0.npz"), "--out", tmp_path / "c", *SCST
    )
    assert "the init model" in message and "reads features of the 'efficientnet-lite0' encoder" in message
    assert "the data holds features of 'toy-cnn'" in message
    with pytest.raises(ValueError, match="init"):
        load_run_config(None, {"data": str(data), "scst": True})
    with pytest.raises(ValueError, match="add scst"):
        load_run_config(None, {"data": str(data), "samples": 3})


def test_scst_on_several_data_sets_and_its_default_folder(tmp_path: Path, monkeypatch) -> None:
    two = _two(tmp_path)
    init = fit(two, tmp_path / "xe", SMALL, BASE, min_count=1).best_path
    monkeypatch.chdir(tmp_path)
    _train("--data", two[0], "--data", two[1], "--min-count", "1", "--init", init, "--epochs", "1", *SCST)
    history = json.loads((tmp_path / "runs/toy+toy-lstm-scst/history.json").read_text())
    assert {"toy#1/CIDEr", "toy#2/CIDEr", "CIDEr"} <= set(history["metrics"][0])
