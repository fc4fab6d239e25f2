"""fit() and `rnncap train`: a run on a prepared file that keeps the best epoch by CIDEr, continues, ships float16;
the attention model on the file's grid features."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import DIM, LOCATIONS, make_prepared
from helpers import TOY_ENCODER as ENCODER
from rnncap.apps.fit import fit, fit_run
from rnncap.apps.run_config import RunConfig, load_run_config
from rnncap.cli import main
from rnncap.data import StoreError, load_grid
from rnncap.models import AttentionCaptioner, AttentionConfig, RNNConfig, load_model
from rnncap.train import TrainConfig

SMALL = RNNConfig(cell_type="lstm", wordvec_dim=8, hidden_dim=16, dropout=0.0)


def _config(**overrides) -> TrainConfig:
    settings = {
        "num_epochs": 3,
        "batch_size": 4,
        "optim_config": {"learning_rate": 5e-2},
        "lr_decay": 1.0,
        "patience": None,
        "progress": False,
    }
    return TrainConfig(**settings | overrides)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_prepared(tmp_path)


def test_fit_keeps_the_epoch_with_the_best_cider_and_ships_it_in_float16(data: Path, tmp_path: Path) -> None:
    result = fit(data, tmp_path / "run", SMALL, _config())
    metrics = result.history["metrics"]
    assert len(metrics) == 3 and all(set(m) == {"BLEU-4", "CIDEr"} for m in metrics)
    ciders = [m["CIDEr"] for m in metrics]
    assert result.best_epoch == 1 + int(np.argmax(ciders))  # the first of equal bests
    best = load_model(result.best_path)
    assert best.metadata["encoder"] == ENCODER
    assert best.metadata["max_length"] == 8  # <START>, at most 6 words, <END>
    assert best.metadata["training"]["best_epoch"] == result.best_epoch
    assert best.metadata["training"]["val_greedy"] == metrics[result.best_epoch - 1]
    shipped = load_model(result.shipped_path)
    assert shipped.metadata == best.metadata
    with np.load(result.shipped_path) as archive:
        assert archive["param/Wx"].dtype == np.float16
    for name, value in best.params.items():
        np.testing.assert_allclose(shipped.params[name], value, rtol=1e-3, atol=1e-3)
        np.testing.assert_array_equal(result.model.params[name], value)


def test_running_again_continues_the_run(data: Path, tmp_path: Path) -> None:
    whole = fit(data, tmp_path / "whole", SMALL, _config(num_epochs=3))
    fit(data, tmp_path / "parts", SMALL, _config(num_epochs=2))
    continued = fit(data, tmp_path / "parts", SMALL, _config(num_epochs=3))
    assert continued.resumed
    assert continued.history["metrics"] == whole.history["metrics"]
    for name, value in whole.model.params.items():
        np.testing.assert_array_equal(continued.model.params[name], value)
    with pytest.raises(ValueError, match="already holds a training run"):
        fit(data, tmp_path / "parts", SMALL, _config(), resume=False)


def test_select_by_validation_loss_and_bad_choices(data: Path, tmp_path: Path) -> None:
    result = fit(data, tmp_path / "run", SMALL, _config(num_epochs=2), select_by="val_loss")
    assert result.history["metrics"] == [None, None]
    assert result.best_epoch == 1 + int(np.argmin(result.history["val_loss"]))
    with pytest.raises(ValueError, match="select_by must be one of"):
        fit(data, tmp_path / "other", SMALL, _config(), select_by="METEOR")
    with pytest.raises(ValueError, match="test"):
        fit(data, tmp_path / "other", SMALL, _config(), val_split="test")


def test_train_command_with_a_config_file(data: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text('wordvec = 8\nhidden = 16\ndropout = 0.0\nepochs = 2\nbatch_size = 4\nlr = 0.05\ncell = "gru"\n')
    out = tmp_path / "run"
    status = main(["train", "--data", str(data), "--out", str(out), "--config", str(config), "--epochs", "3"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "BLEU-4  CIDEr  (greedy, 0-100)" in printed and "<- best" in printed
    model = load_model(out / "best.npz")
    assert (model.cell_type, model.hidden_dim) == ("gru", 16)
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]  # the command line's --epochs won over the file's
    assert (out / "loss.png").is_file() and (out / "best-float16.npz").is_file()


def test_fit_run_does_in_python_what_the_train_command_does(data: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        f'data = "{data}"\nout = "{tmp_path / "python"}"\nwordvec = 8\nhidden = 16\nepochs = 2\nbatch_size = 4\n'
    )
    result = fit_run(load_run_config(config))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "command")]) == 0
    history = json.loads((tmp_path / "command" / "history.json").read_text())
    assert {key: value for key, value in history.items() if key != "epoch_time"} == {
        key: value for key, value in result.history.items() if key != "epoch_time"
    }
    assert result.best_path == tmp_path / "python" / "best.npz"


def test_train_command_errors(data: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("hiden = 16\n")
    assert main(["train", "--data", str(data), "--config", str(bad)]) == 1
    assert "unknown option 'hiden'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train"])
    assert "--data is required" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "r")]) == 1
    assert "missing.h5" in capsys.readouterr().err


# ---------------------------------------------------------------------- the attention model


ATTENTION = AttentionConfig(wordvec_dim=8, hidden_dim=16, dropout=0.0, attention_dim=8, alpha_reg=0.5)


def test_fit_trains_the_attention_model_on_the_grid(data: Path, tmp_path: Path) -> None:
    result = fit(data, tmp_path / "run", ATTENTION, _config(num_epochs=2))
    assert isinstance(result.model, AttentionCaptioner)
    assert result.model.feature_shape == (LOCATIONS, DIM)
    assert (result.model.attention_dim, result.model.alpha_reg) == (8, 0.5)
    assert all(set(m) == {"BLEU-4", "CIDEr"} for m in result.history["metrics"])
    shipped = load_model(result.shipped_path)
    assert isinstance(shipped, AttentionCaptioner)
    assert shipped.metadata["encoder"] == ENCODER and shipped.metadata["max_length"] == 8
    assert shipped.metadata["training"]["best_epoch"] == result.best_epoch
    with np.load(result.shipped_path) as archive:
        assert archive["param/W_feat"].dtype == np.float16
    grid = load_grid(data, "dev")
    np.testing.assert_array_equal(shipped.sample(grid), load_model(result.best_path).sample(grid))


def test_a_continued_attention_run_reads_the_grid_whatever_the_settings(data: Path, tmp_path: Path) -> None:
    whole = fit(data, tmp_path / "whole", ATTENTION, _config(num_epochs=2))
    fit(data, tmp_path / "parts", ATTENTION, _config(num_epochs=1))
    with pytest.raises(ValueError, match="the model: the attention model in the run, a recurrent network"):
        fit(data, tmp_path / "parts", SMALL, _config(num_epochs=2))  # another model is refused, not ignored
    continued = fit(data, tmp_path / "parts", None, _config(num_epochs=2))  # None: the run's model
    assert continued.resumed and isinstance(continued.model, AttentionCaptioner)
    assert continued.history["metrics"] == whole.history["metrics"]
    for name, value in whole.model.params.items():
        np.testing.assert_array_equal(continued.model.params[name], value)


def test_attention_needs_an_lstm_and_a_grid(data: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="the attention model's cell is an LSTM; cell_type 'gru' needs attention=False"
    ):
        RunConfig.from_options({"attention": True, "cell": "gru"})
    with h5py.File(data, "a") as f:
        del f["features/grid"]
    with pytest.raises(StoreError, match="holds no grid features .*prepare the file again without --no-grid"):
        fit(data, tmp_path / "run", ATTENTION, _config())
    assert not (tmp_path / "run").exists()


def test_train_command_trains_the_attention_model(data: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    config = tmp_path / "run.toml"
    config.write_text("attention = true\nattention_dim = 8\nwordvec = 8\nhidden = 16\nepochs = 1\nbatch_size = 4\n")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", str(data), "--config", str(config), "--alpha-reg", "0.25"]) == 0
    model = load_model(tmp_path / "runs" / "toy-attention" / "best-float16.npz")  # the default run folder
    assert isinstance(model, AttentionCaptioner)
    assert (model.attention_dim, model.alpha_reg, model.hidden_dim, model.dropout) == (8, 0.25, 16, 0.5)
    assert "<- best" in capsys.readouterr().out

    args = ["train", "--data", str(data), "--out", str(tmp_path / "other"), "--epochs", "1"]
    assert main([*args, "--attention", "--cell", "gru"]) == 1
    assert "the attention model's cell is an LSTM" in capsys.readouterr().err
    config.write_text('attention = "yes"\n')
    assert main([*args, "--config", str(config)]) == 1
    assert "attention must be true or false, got 'yes'" in capsys.readouterr().err
