"""Checkpoint averaging: ``--keep-epochs`` keeps every epoch's model, ``average_models`` / ``rnncap average`` make
one model of their mean weights, and models that are not checkpoints of one run are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from helpers import KINDS, make_captions, make_prepared, make_vocab, small_model
from rnncap.cli import main
from rnncap.models import average_model_files, average_models, load_model
from rnncap.train import MODEL_FILE, CaptionData, TrainConfig, Trainer
from rnncap.train.checkpoint import epoch_file


@pytest.mark.parametrize("kind", KINDS)
def test_the_average_is_the_mean_of_every_weight(kind: str) -> None:
    rng = np.random.default_rng(0)
    models = [small_model(kind, rng, dtype=np.float32) for _ in range(3)]
    for model in models:
        model.metadata = {"encoder": "toy", "training": {"best_epoch": 2}}
    models[-1].metadata["data"] = "last.h5"
    averaged = average_models(iter(models))  # a generator is enough
    assert type(averaged) is type(models[0]) and averaged.config() == models[0].config()
    for name, value in averaged.params.items():
        expected = np.mean([m.params[name].astype(np.float64) for m in models], axis=0)
        assert value.dtype == np.float32 and np.allclose(value, expected, rtol=1e-6, atol=1e-7), name
    # the last checkpoint's facts, not one checkpoint's own scores
    assert averaged.metadata == {"encoder": "toy", "data": "last.h5", "averaged": 3}
    features = rng.standard_normal((2, *averaged.feature_shape))
    assert averaged.sample(features, max_length=4).shape == (2, 4)


def test_the_average_of_one_model_is_that_model() -> None:
    model = small_model("lstm", np.random.default_rng(1))
    averaged = average_models([model])
    assert all(np.array_equal(averaged.params[name], value) for name, value in model.params.items())
    assert averaged.params["Wx"] is not model.params["Wx"]  # a new model: the input is left alone


def test_models_of_another_kind_size_or_vocabulary_are_refused() -> None:
    rng = np.random.default_rng(2)
    lstm = small_model("lstm", rng)
    with pytest.raises(ValueError, match="at least one model"):
        average_models([])
    with pytest.raises(ValueError, match=r"model 2 differs from model 1 in cell_type 'gru' \(model 1: 'lstm'\)"):
        average_models([lstm, small_model("gru", rng)])
    with pytest.raises(ValueError, match="hidden_dim 7"):
        average_models([lstm, small_model("lstm", rng, hidden_dim=7)])
    with pytest.raises(ValueError, match=r"model 2 differs .* model 'AttentionCaptioner'"):
        average_models([lstm, small_model("attention", rng)])
    with pytest.raises(ValueError, match="model 3 has another vocabulary than model 1"):
        average_models([lstm, lstm, small_model("lstm", rng, words=7)])


def _toy_data(seed: int, images: int, captions: int, dim: int) -> CaptionData:
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((images, dim)).astype(np.float32)
    return CaptionData(features, make_captions(rng, captions, 6, 12), rng.integers(0, images, size=captions))


def test_keep_epochs_keeps_each_epoch_and_a_resume_keeps_on(tmp_path: Path) -> None:
    from rnncap import CaptioningRNN

    train, val = _toy_data(1, 8, 12, 6), _toy_data(2, 3, 4, 6)
    config = TrainConfig(num_epochs=2, batch_size=6, patience=None, progress=False, plot=False, keep_epochs=True)
    model = CaptioningRNN(make_vocab(8), 6, 4, 5, cell_type="lstm", rng=0)
    Trainer(model, train, val, config, tmp_path).train()
    assert epoch_file(2) == "epoch-002.npz"
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == ["epoch-001.npz", "epoch-002.npz"]
    last = load_model(tmp_path / MODEL_FILE).params
    kept = load_model(tmp_path / epoch_file(2)).params
    assert all(np.array_equal(kept[name], value) for name, value in last.items())
    first = load_model(tmp_path / epoch_file(1)).params
    assert not np.array_equal(first["Wx"], kept["Wx"])  # each epoch's own weights

    Trainer.resume(tmp_path, train, val, config=dataclasses.replace(config, num_epochs=3)).train()
    assert sorted(p.name for p in tmp_path.glob("epoch-*")) == [epoch_file(e) for e in (1, 2, 3)]
    averaged = average_model_files([tmp_path / epoch_file(e) for e in (2, 3)])
    assert averaged.metadata["averaged_from"] == ["epoch-002.npz", "epoch-003.npz"]


def test_without_keep_epochs_no_epoch_file_is_written(tmp_path: Path) -> None:
    from rnncap import CaptioningRNN

    train = _toy_data(1, 8, 12, 6)
    config = TrainConfig(num_epochs=1, batch_size=6, patience=None, progress=False, plot=False)
    Trainer(CaptioningRNN(make_vocab(8), 6, 4, 5, rng=0), train, None, config, tmp_path).train()
    assert not list(tmp_path.glob("epoch-*")) and (tmp_path / MODEL_FILE).is_file()


def test_the_train_and_average_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, run = make_prepared(tmp_path), tmp_path / "run"
    common = ["train", "--data", str(data), "--out", str(run), "--hidden", "8", "--wordvec", "4", "--batch-size", "4"]
    assert main([*common, "--epochs", "2", "--keep-epochs"]) == 0
    assert main([*common, "--epochs", "3"]) == 0  # a rerun continues, keeping epochs as the run does
    epochs = [run / epoch_file(e) for e in (1, 2, 3)]
    assert all(path.is_file() for path in epochs)

    out = tmp_path / "average.npz"
    assert main(["average", *map(str, epochs[1:]), "--out", str(out), "--float16"]) == 0
    assert f"wrote {out}: the mean of 2 models" in capsys.readouterr().out
    averaged, models = load_model(out), [load_model(path) for path in epochs[1:]]
    for name, value in averaged.params.items():
        expected = (models[0].params[name].astype(np.float64) + models[1].params[name]) / 2
        assert np.allclose(value, expected, rtol=1e-3, atol=1e-3), name  # stored in float16
    assert averaged.metadata["averaged_from"] == ["epoch-002.npz", "epoch-003.npz"]
    assert averaged.metadata["encoder"] == models[1].metadata["encoder"]

    assert main(["average", str(epochs[0]), "--out", str(out)]) == 1  # an existing output is refused
    assert "already exists" in capsys.readouterr().err
    assert main(["average", str(epochs[0]), "--out", str(epochs[0]), "--overwrite"]) == 1  # never an input
    assert "is an input" in capsys.readouterr().err
    assert main(["average", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "new.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "new.npz").exists()
