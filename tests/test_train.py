"""The trainer: CS231n's overfit check, determinism, exact resume, checkpoints, keep-best, early stopping,
divergence, learning-rate decay, clipping, grid features for the attention model and clear errors. Real models on
tiny data, no mocks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import make_captions, make_vocab
from rnncap import CaptioningRNN
from rnncap.models import AttentionCaptioner, load_model
from rnncap.optim import global_norm
from rnncap.train import (
    BEST_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    PLOT_FILE,
    STATE_FILE,
    CaptionData,
    MetricScorer,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    ValLossScorer,
)

D, W, H, T, NUM_WORDS = 12, 8, 16, 8, 10
L, A = 4, 6  # grid locations and attention width of the attention model


def _data(
    seed: int, num_images: int, num_captions: int, vocab_size: int = NUM_WORDS + 4, grid: bool = False
) -> CaptionData:
    """Pooled float32 features (M, D), or with ``grid`` float16 grids (M, L, D) as a prepared file stores them."""
    rng = np.random.default_rng(seed)
    if grid:
        features = rng.standard_normal((num_images, L, D)).astype(np.float16)
    else:
        features = rng.standard_normal((num_images, D)).astype(np.float32)
    captions = make_captions(rng, num_captions, T, vocab_size)
    return CaptionData(features, captions, rng.integers(0, num_images, size=num_captions))


@pytest.fixture
def train_data() -> CaptionData:
    return _data(1, num_images=20, num_captions=40)


@pytest.fixture
def val_data() -> CaptionData:
    return _data(2, num_images=6, num_captions=12)


def _model(cell_type: str = "lstm", dropout: float = 0.0) -> CaptioningRNN:
    return CaptioningRNN(make_vocab(NUM_WORDS), D, W, H, cell_type=cell_type, rng=0, dropout=dropout)


def _attention_model(dropout: float = 0.0) -> AttentionCaptioner:
    return AttentionCaptioner(make_vocab(NUM_WORDS), D, L, W, H, attention_dim=A, alpha_reg=0.5, rng=0, dropout=dropout)


def _config(**overrides) -> TrainConfig:
    settings = {
        "num_epochs": 4,
        "batch_size": 16,  # 40 captions: batches of 16, 16 and 8
        "optim_config": {"learning_rate": 1e-2},
        "lr_decay": 0.9,
        "patience": None,
        "progress": False,
        "plot": False,
    }
    return TrainConfig(**(settings | overrides))


def _without_times(history: dict) -> dict:
    return {key: value for key, value in history.items() if key != "epoch_time"}


def _assert_params_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


# ---------------------------------------------------------------------- data


@pytest.mark.parametrize(
    ("features", "captions", "image_idxs", "message"),
    [
        (np.zeros(5), np.ones((2, 3), int), [0, 1], r"features must have shape \(M, D\) or \(M, L, D\)"),
        (np.zeros((3, 2, 2, 4)), np.ones((2, 3), int), [0, 1], r"features must have shape \(M, D\) or \(M, L, D\)"),
        (np.zeros((3, 4), int), np.ones((2, 3), int), [0, 1], "features must be floating point"),
        (np.full((3, 4), np.nan), np.ones((2, 3), int), [0, 1], r"NaN or infinite values \(rows \[0, 1, 2\]\)"),
        (
            np.where(np.arange(3)[:, None, None] == 1, np.inf, np.zeros((3, 2, 4))),
            np.ones((2, 3), int),
            [0, 1],
            r"NaN or infinite values \(rows \[1\]\)",
        ),
        (np.zeros((3, 4)), np.ones((2, 1), int), [0, 1], r"T >= 2, got \(2, 1\)"),
        (np.zeros((3, 4)), np.ones((2, 3)), [0, 1], "captions must hold integer token ids"),
        (np.zeros((3, 4)), -np.ones((2, 3), int), [0, 1], r"negative token id \(-1\)"),
        (np.zeros((3, 4)), np.ones((2, 3), int), [0], r"image_idxs must have shape \(2,\), one per caption"),
        (np.zeros((3, 4)), np.ones((2, 3), int), [0.0, 1.0], "image_idxs must be integers"),
        (np.zeros((3, 4)), np.ones((2, 3), int), [0, 3], r"image_idxs holds 3, outside \[0, 3\)"),
    ],
)
def test_caption_data_rejects_bad_arrays(features, captions, image_idxs, message):
    with pytest.raises(ValueError, match=message):
        CaptionData(features, captions, np.asarray(image_idxs))


def test_caption_data_is_checked_against_the_model(train_data):
    wide = CaptionData(np.zeros((2, D + 1), np.float32), train_data.captions[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"train features have shape \(2, {D + 1}\), the model reads \(M, {D}\)$"):
        Trainer(_model(), wide, config=_config())
    grid = _data(1, num_images=20, num_captions=40, grid=True)
    with pytest.raises(ValueError, match=rf"shape \(20, {L}, {D}\), the model reads \(M, {D}\) \(an Attention"):
        Trainer(_model(), grid, config=_config())
    with pytest.raises(ValueError, match=rf"shape \(20, {D}\), the model reads \(M, {L}, {D}\) \(an Attention"):
        Trainer(_attention_model(), train_data, config=_config())
    other_grid = CaptionData(np.zeros((2, L + 1, D), np.float16), train_data.captions[:2], np.array([0, 1]))
    with pytest.raises(ValueError, match=rf"train features have shape \(2, {L + 1}, {D}\), the model reads"):
        Trainer(_attention_model(), other_grid, config=_config())
    big_id = train_data.captions[:2].copy()
    big_id[0, 1] = NUM_WORDS + 4
    with pytest.raises(ValueError, match=r"val captions hold token id 14, outside the model's vocabulary \[0, 14\)"):
        Trainer(_model(), train_data, CaptionData(np.zeros((2, D)), big_id, np.array([0, 1])), _config())


# ---------------------------------------------------------------------- CS231n's overfit check


@pytest.mark.parametrize(("cell_type", "lr_decay", "limit"), [("rnn", 0.95, 0.1), ("lstm", 0.995, 0.5)])
def test_overfits_small_data(cell_type, lr_decay, limit):
    """CS231n's small-data check: 50 captions, Adam 5e-3, 50 epochs of batch 25, with its model sizes and no dropout.

    The learning-rate decay per epoch is the notebooks': 0.95 for the RNN, 0.995 for the LSTM (with 0.95 the
    LSTM's learning rate falls to 4e-4 and it stops near a loss of 1.3; so does the PyTorch twin).
    """
    rng = np.random.default_rng(0)
    features = rng.standard_normal((50, 512)).astype(np.float32)
    captions = make_captions(rng, 50, 17, 1004)
    data = CaptionData(features, captions, np.arange(50))
    model = CaptioningRNN(make_vocab(1000), 512, 256, 512, cell_type=cell_type, rng=0, dropout=0.0)  # as CS231n
    config = TrainConfig(
        num_epochs=50, batch_size=25, optim_config={"learning_rate": 5e-3}, lr_decay=lr_decay, progress=False
    )
    history = Trainer(model, data, config=config).train()
    assert len(history["iteration_loss"]) == 100
    assert history["iteration_loss"][0] > 50  # about 9 words of -log(1/1004) each
    loss, _ = model.loss(features, captions)
    assert loss < limit


# ---------------------------------------------------------------------- determinism and resume


def test_same_seed_same_run(train_data, val_data):
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        history = Trainer(model, train_data, val_data, _config(seed=seed)).train()
        runs.append((model.params, _without_times(history)))
    _assert_params_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0]["Wx"], runs[2][0]["Wx"])  # another seed shuffles otherwise


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("attention", [False, True])
def test_resume_is_bit_for_bit(tmp_path, dropout, attention):
    """2 epochs, stop, resume for 2 more == 4 epochs in one go: parameters, best model and history.

    With dropout too: its masks come from the trainer's generator, whose state every checkpoint keeps. And for the
    attention model on float16 grids as for the recurrent network on pooled features."""
    train_data = _data(1, num_images=20, num_captions=40, grid=attention)
    val_data = _data(2, num_images=6, num_captions=12, grid=attention)
    make = _attention_model if attention else _model
    config = _config(update_rule="adam", max_grad_norm=0.5)
    whole = make(dropout=dropout)
    whole_history = Trainer(whole, train_data, val_data, config, tmp_path / "whole").train()

    Trainer(
        make(dropout=dropout), train_data, val_data, dataclasses.replace(config, num_epochs=2), tmp_path / "split"
    ).train()
    resumed = Trainer.resume(tmp_path / "split", train_data, val_data, config=config)
    assert resumed.epoch == 2
    resumed_history = resumed.train()

    assert _without_times(resumed_history) == _without_times(whole_history)
    _assert_params_equal(resumed.model.params, whole.params)  # both hold their best epoch
    for name in (MODEL_FILE, BEST_FILE):
        _assert_params_equal(load_model(tmp_path / "split" / name).params, load_model(tmp_path / "whole" / name).params)

    # Resuming into a model given by the caller works the same, and so does training on with the same Trainer.
    given = make(dropout=dropout)
    again = Trainer.resume(tmp_path / "split", train_data, val_data, model=given, config=config)
    assert again.model is given and again.epoch == 4
    continued = Trainer(make(dropout=dropout), train_data, val_data, dataclasses.replace(config, num_epochs=2))
    continued.train()
    continued.config = config
    assert _without_times(continued.train()) == _without_times(whole_history)
    _assert_params_equal(continued.model.params, whole.params)


def test_attention_model_trains_on_float16_grids_as_stored():
    """Grids stay float16 in the trainer, half the memory of float32 (the model casts each batch), and the run is
    the very run on a float32 copy."""
    train, val = _data(1, num_images=20, num_captions=40, grid=True), _data(2, num_images=6, num_captions=12, grid=True)
    model = _attention_model(dropout=0.3)
    trainer = Trainer(model, train, val, _config())
    assert trainer.train_data.features is train.features and trainer.val_data.features.dtype == np.float16
    history = trainer.train()
    assert history["train_loss"][-1] < history["train_loss"][0]

    def as_float32(data: CaptionData) -> CaptionData:
        return CaptionData(data.features.astype(np.float32), data.captions, data.image_idxs)

    reference = _attention_model(dropout=0.3)
    assert _without_times(Trainer(reference, as_float32(train), as_float32(val), _config()).train()) == (
        _without_times(history)
    )
    _assert_params_equal(model.params, reference.params)


def test_resume_errors(tmp_path, train_data, val_data):
    with pytest.raises(FileNotFoundError, match="no trainer checkpoint"):
        Trainer.resume(tmp_path / "nothing", train_data, val_data)
    Trainer(_model(), train_data, val_data, _config(num_epochs=1), tmp_path).train()
    with pytest.raises(ValueError, match="update rule 'adam', whose state cannot continue as 'sgd'"):
        Trainer.resume(tmp_path, train_data, val_data, config=_config(update_rule="sgd"))
    with pytest.raises(ValueError, match="chose its best epoch by val_loss"):
        Trainer.resume(tmp_path, train_data, config=_config(keep_best=False))
    with pytest.raises(ValueError, match="the checkpoint is of a model"):
        Trainer.resume(tmp_path, train_data, val_data, model=_model("gru"))
    (tmp_path / STATE_FILE).write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="is not a readable trainer checkpoint"):
        Trainer.resume(tmp_path, train_data, val_data)


# ---------------------------------------------------------------------- files


def test_checkpoint_files(tmp_path, train_data, val_data):
    model = _model()
    trainer = Trainer(model, train_data, val_data, _config(num_epochs=2, plot=True, keep_best=False), tmp_path)
    history = trainer.train()
    for name in (STATE_FILE, MODEL_FILE, BEST_FILE, HISTORY_FILE, PLOT_FILE):
        assert (tmp_path / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [STATE_FILE, MODEL_FILE, BEST_FILE, HISTORY_FILE, PLOT_FILE]
    )  # no temporary files left behind
    _assert_params_equal(CaptioningRNN.load(tmp_path / MODEL_FILE).params, model.params)
    best = CaptioningRNN.load(tmp_path / BEST_FILE)
    assert best.config() == model.config()
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == history
    assert (tmp_path / PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    umask = os.umask(0)
    os.umask(umask)
    for name in (STATE_FILE, HISTORY_FILE, PLOT_FILE):  # the user's umask, not a temporary file's 0600
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    with np.load(tmp_path / STATE_FILE, allow_pickle=False) as state:  # readable without pickle
        assert {"param/Wx", "optim/Wx/m", "optim/Wx/v", "__state__"} <= set(state.files)
        meta = json.loads(str(state["__state__"]))
    assert meta["epoch"] == 2 and meta["optimizer"]["Wx"]["t"] == 6  # 3 updates per epoch
    assert meta["rng_state"]["bit_generator"] == "PCG64"


def test_history(train_data, val_data):
    model = _model()
    history = Trainer(model, train_data, val_data, _config(num_epochs=3, lr_decay=0.5)).train()
    assert len(history["iteration_loss"]) == 9
    assert history["epoch"] == [1, 2, 3]
    assert history["iterations"] == [3, 6, 9]
    assert history["learning_rate"] == [1e-2, 5e-3, 2.5e-3]
    assert history["score"] == history["val_loss"]
    assert all(t > 0 for t in history["epoch_time"])
    losses = np.array(history["iteration_loss"])
    weights = np.array([16, 16, 8] * 3)
    np.testing.assert_allclose(history["train_loss"], (losses * weights).reshape(3, 3).sum(axis=1) / 40)
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_validation_loss_is_the_mean_over_the_split(train_data, val_data):
    model = _model()
    trainer = Trainer(model, train_data, val_data, _config(num_epochs=1, keep_best=False, val_batch_size=5))
    history = trainer.train()
    whole, _ = model.loss(val_data.features[val_data.image_idxs], val_data.captions)
    assert history["val_loss"][0] == pytest.approx(whole, rel=1e-5)


def test_learning_rate_decays_per_epoch(train_data):
    trainer = Trainer(_model(), train_data, config=_config(num_epochs=3, update_rule="sgd_momentum", lr_decay=0.8))
    history = trainer.train()
    expected = [1e-2 * 0.8**epoch for epoch in range(3)]
    assert history["learning_rate"] == expected
    assert {cfg["learning_rate"] for cfg in trainer.optim_configs.values()} == {expected[-1]}


def test_progress_bar_shows_loss_and_rate(train_data, capsys):
    Trainer(_model(), train_data, config=_config(num_epochs=1, progress=True)).train()
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "caption/s" in err and "train_loss=" in err


# ---------------------------------------------------------------------- keep-best and early stopping


def _scores(values):
    """A score_fn that returns ``values`` one epoch after another, to choose which epoch is best."""
    remaining = iter(values)
    return lambda model: next(remaining)


@pytest.mark.parametrize(("higher_is_better", "best_epoch"), [(True, 2), (False, 4)])
def test_keep_best_by_score_fn(tmp_path, train_data, higher_is_better, best_epoch):
    model = _model()
    score_fn = _scores([1.0, 3.0, 2.0, 0.0])
    trainer = Trainer(
        model, train_data, None, _config(), tmp_path, score_fn=score_fn, higher_is_better=higher_is_better
    )
    history = trainer.train()
    assert history["score"] == [1.0, 3.0, 2.0, 0.0]
    assert history["val_loss"] == [None] * 4
    assert trainer.best_epoch == best_epoch

    reference = _model()  # the same run, stopped at the best epoch
    Trainer(reference, train_data, config=_config(num_epochs=best_epoch)).train()
    _assert_params_equal(model.params, reference.params)
    _assert_params_equal(CaptioningRNN.load(tmp_path / BEST_FILE).params, reference.params)
    last = CaptioningRNN.load(tmp_path / MODEL_FILE).params  # the checkpoint keeps the last epoch's, to resume
    assert (best_epoch == 4) == np.array_equal(last["Wx"], reference.params["Wx"])


def test_keep_best_off_ends_with_last_params(train_data, val_data):
    model = _model()
    Trainer(model, train_data, val_data, _config(keep_best=False)).train()
    reference = _model()
    Trainer(reference, train_data, config=_config()).train()
    _assert_params_equal(model.params, reference.params)


def test_early_stopping(tmp_path, train_data):
    config = _config(num_epochs=10, patience=2)
    trainer = Trainer(
        _model(), train_data, None, config, tmp_path, score_fn=_scores([1.0, 2.0, 2.0, 1.5]), higher_is_better=True
    )
    history = trainer.train()
    assert history["epoch"] == [1, 2, 3, 4]  # epochs 3 and 4 did not beat epoch 2
    assert trainer.stopped_early and trainer.best_epoch == 2
    resumed = Trainer.resume(tmp_path, train_data, score_fn=_scores([]))
    assert resumed.train()["epoch"] == [1, 2, 3, 4]  # a stopped run stays stopped


def test_score_fn_returning_named_metrics_chooses_by_score_key(tmp_path, train_data):
    results = [{"BLEU-4": 0.3, "CIDEr": 0.1}, {"BLEU-4": 0.1, "CIDEr": 0.5}, {"BLEU-4": 0.2, "CIDEr": 0.2}]
    trainer = Trainer(
        _model(), train_data, None, _config(num_epochs=3, plot=True), tmp_path, score_fn=_scores(results),
        higher_is_better=True, score_key="CIDEr",
    )  # fmt: skip
    history = trainer.train()
    assert trainer.best_epoch == 2
    assert history["score"] == [0.1, 0.5, 0.2]
    assert history["metrics"] == results
    assert json.loads((tmp_path / "history.json").read_text())["metrics"] == results
    assert (tmp_path / "loss.png").stat().st_size > 0
    resumed = Trainer.resume(tmp_path, train_data, score_fn=_scores([]))
    assert resumed.scorer.key == "CIDEr" and resumed.best_epoch == 2
    with pytest.raises(ValueError, match="score_key='BLEU-4'"):
        Trainer.resume(tmp_path, train_data, score_fn=_scores([]), score_key="BLEU-4")


def test_score_key_must_name_a_returned_metric(train_data):
    trainer = Trainer(
        _model(), train_data, config=_config(), score_fn=_scores([{"BLEU-4": 0.2}]), higher_is_better=True,
        score_key="CIDEr",
    )  # fmt: skip
    with pytest.raises(ValueError, match="score_key 'CIDEr' must name one of them"):
        trainer.train()
    with pytest.raises(ValueError, match="pass the score_fn too"):
        Trainer(_model(), train_data, config=_config(), score_key="CIDEr")


def test_score_fn_must_return_a_number(train_data):
    trainer = Trainer(_model(), train_data, config=_config(), score_fn=_scores([float("nan")]), higher_is_better=True)
    with pytest.raises(ValueError, match="score_fn returned nan after epoch 1; it must return a finite number"):
        trainer.train()


def test_a_scorer_object_chooses_as_the_score_fn_it_wraps(tmp_path, train_data):
    results = [{"BLEU-4": 0.3, "CIDEr": 0.1}, {"BLEU-4": 0.1, "CIDEr": 0.5}, {"BLEU-4": 0.2, "CIDEr": 0.2}]
    by_fn = Trainer(
        _model(), train_data, config=_config(num_epochs=3), score_fn=_scores(results), higher_is_better=True,
        score_key="CIDEr",
    )  # fmt: skip
    scorer = MetricScorer(_scores(results), higher_is_better=True, key="CIDEr")
    by_scorer = Trainer(_model(), train_data, config=_config(num_epochs=3), out_dir=tmp_path, scorer=scorer)
    assert _without_times(by_scorer.train()) == _without_times(by_fn.train())
    _assert_params_equal(by_scorer.model.params, by_fn.model.params)
    assert Trainer.resume(tmp_path, train_data, score_fn=_scores([])).best_epoch == 2  # the same record on disk


def test_patience_counts_only_where_there_is_a_score(train_data):
    """The default patience (4) needs no score to set up: without one there is nothing to count, every epoch runs."""
    assert TrainConfig().patience == 4
    Trainer(_model(), train_data)  # TrainConfig() as it comes
    trainer = Trainer(_model(), train_data, config=_config(num_epochs=4, patience=1))
    assert trainer.train()["epoch"] == [1, 2, 3, 4] and not trainer.stopped_early
    stopping = Trainer(_model(), train_data, config=_config(num_epochs=4, patience=1), score_fn=_scores([1.0] * 4),
                       higher_is_better=True)  # fmt: skip
    assert stopping.train()["epoch"] == [1, 2] and stopping.stopped_early


# ---------------------------------------------------------------------- divergence


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, train_data):
    """A learning rate far too large makes the weights overflow: training stops, the files of epoch 2 stay."""
    good = _config(num_epochs=2, update_rule="sgd", optim_config={"learning_rate": 0.1}, lr_decay=1.0, plot=True)
    Trainer(_model(), train_data, config=good, out_dir=tmp_path).train()
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    huge = dataclasses.replace(good, num_epochs=4, optim_config={"learning_rate": 1e38})
    trainer = Trainer.resume(tmp_path, train_data, config=huge)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(TrainingDiverged, match="epoch 3") as caught:
        trainer.train()
    message = str(caught.value)
    assert "Lower the learning rate (now 1e+38) or clip the gradients (max_grad_norm, --clip)" in message
    assert f"last good checkpoint (epoch 2) in {tmp_path} is untouched" in message
    assert caught.value.epoch == 3
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert Trainer.resume(tmp_path, train_data).epoch == 2  # and it still resumes


def test_divergence_in_the_first_epoch_writes_nothing(tmp_path, train_data):
    config = _config(update_rule="sgd", optim_config={"learning_rate": 1e38})
    with (
        np.errstate(over="ignore", invalid="ignore"),
        pytest.raises(TrainingDiverged, match=r"epoch 1.*No epoch had completed") as caught,
    ):
        Trainer(_model(), train_data, config=config, out_dir=tmp_path / "run").train()
    assert caught.value.iteration is None or caught.value.iteration >= 2
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- clipping


def test_gradient_clipping_bounds_each_step(train_data):
    """With SGD, one update moves the weights by learning_rate * (clipped gradient): at most lr * max_grad_norm."""
    config = _config(num_epochs=1, batch_size=40, update_rule="sgd", optim_config={"learning_rate": 1.0})
    for max_grad_norm, bounded in ((1e-3, True), (None, False)):
        model = _model()
        before = {name: value.copy() for name, value in model.params.items()}
        Trainer(model, train_data, config=dataclasses.replace(config, max_grad_norm=max_grad_norm)).train()
        step = global_norm({name: model.params[name] - before[name] for name in before})
        assert (step <= 1e-3 * (1 + 1e-4)) == bounded


# ---------------------------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_epochs": 0}, "num_epochs must be an integer >= 1, got 0"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"patience": 0}, "patience must be an integer >= 1"),
        ({"val_batch_size": 0}, "val_batch_size must be an integer >= 1"),
        ({"update_rule": "adamw"}, "update_rule must be one of"),
        ({"optim_config": {"learning_rat": 1e-3}}, r"optim_config for adam takes .*, not \['learning_rat'\]"),
        ({"optim_config": {"m": 0.0}}, r"not \['m'\]"),
        ({"optim_config": {"learning_rate": -1e-3}}, r"learning_rate must be in \[0, inf\)"),
        ({"optim_config": [0.1]}, "optim_config must be a dict"),
        ({"lr_decay": 0.0}, r"lr_decay .* must be in \(0, 1\], got 0.0"),
        ({"lr_decay": 1.5}, r"must be in \(0, 1\], got 1.5"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be a positive finite number or None"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm must be a positive finite number or None"),
        ({"keep_best": "yes"}, "keep_best must be True, False or None"),
        ({"plot": None}, "plot must be True or False"),
    ],
)
def test_bad_config_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_bad_trainer_setups(train_data, val_data):
    with pytest.raises(ValueError, match="keep_best needs a score: pass validation data or a score_fn"):
        Trainer(_model(), train_data, config=_config(keep_best=True))
    with pytest.raises(ValueError, match="say whether higher_is_better"):
        Trainer(_model(), train_data, config=_config(), score_fn=lambda model: 0.0)
    with pytest.raises(ValueError, match="pass either a scorer or a score_fn"):
        Trainer(_model(), train_data, val_data, _config(), scorer=ValLossScorer(), score_fn=lambda model: 0.0)
    with pytest.raises(ValueError, match="the validation-loss scorer needs validation data"):
        Trainer(_model(), train_data, config=_config(), scorer=ValLossScorer())
    with pytest.raises(ValueError, match="scorer must be a Scorer, got function"):
        Trainer(_model(), train_data, config=_config(), scorer=lambda model: 0.0)
    with pytest.raises(ValueError, match="the default score is the validation loss, where lower is better"):
        Trainer(_model(), train_data, val_data, _config(), higher_is_better=True)
    with pytest.raises(ValueError, match="config must be a TrainConfig"):
        Trainer(_model(), train_data, config={"num_epochs": 3})
    with pytest.raises(ValueError, match="train must be a CaptionData"):
        Trainer(_model(), (train_data.features, train_data.captions), config=_config())


def test_numpy_numbers_in_the_config_are_saved(tmp_path, train_data):
    config = _config(num_epochs=np.int64(1), seed=np.int32(3), lr_decay=np.float32(0.5))
    Trainer(_model(), train_data, config=config, out_dir=tmp_path).train()
    assert Trainer.resume(tmp_path, train_data).config == dataclasses.replace(config)


# ---------------------------------------------------------------------- defaults, TOML and imports


def test_the_default_config_is_the_rnncap_train_recipe():
    config = TrainConfig()
    assert (config.num_epochs, config.batch_size, config.update_rule, config.optim_config) == (
        15,
        128,
        "adam",
        {"learning_rate": 2e-3},
    )
    assert (config.lr_decay, config.max_grad_norm, config.patience, config.seed) == (0.9, None, 4, 0)


def test_config_from_toml(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(
        'epochs = 3\nbatch-size = 16\nlr = 1e-2\nlr_decay = 0.5\nclip = 5\nupdate_rule = "sgd"\npatience = 2\n'
        'seed = "7"\n'
    )
    assert TrainConfig.from_toml(path) == TrainConfig(
        num_epochs=3,
        batch_size=16,
        optim_config={"learning_rate": 1e-2},
        lr_decay=0.5,
        max_grad_norm=5.0,
        update_rule="sgd",
        patience=2,
        seed=7,
    )
    path.write_text("")
    assert TrainConfig.from_toml(path) == TrainConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "hidden = 16\n",
            r"train.toml: unknown option 'hidden'; known: \['batch_size', 'clip', 'epochs', 'keep_epochs', 'lr'",
        ),
        ("epochs = 2.5\n", "train.toml: epochs must be an integer, got 2.5"),
        ("lr = true\n", "train.toml: lr must be a number, got True"),
        ("[epochs]\nfirst = 1\n", r"train.toml: epochs must be an integer, got \{'first': 1\}"),
        ("epochs = 0\n", "num_epochs must be an integer >= 1, got 0"),
        ('update_rule = "adamw"\n', "update_rule must be one of"),
        ("epochs = \n", "cannot read the config file .*train.toml"),
    ],
)
def test_config_from_toml_errors(tmp_path, text, message):
    path = tmp_path / "train.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_toml(path)


def test_the_data_readers_import_caption_data_without_the_trainer():
    code = "import sys, rnncap.data.store, rnncap.data.cs231n; print('rnncap.train.trainer' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "False"


# ---------------------------------------------------------------------- divergence before NaN (rnncap.train.divergence)


def test_a_huge_learning_rate_stops_at_the_first_jump_of_the_loss(tmp_path, train_data, val_data):
    """Adam at 1e3 keeps every loss finite but thousands of times the loss of guessing each word: the run stops at
    the next minibatch (it used to finish and ship a garbage model), and the last good checkpoint stays."""
    good = _config(num_epochs=2)
    Trainer(_model(), train_data, val_data, config=good, out_dir=tmp_path).train()
    huge = dataclasses.replace(good, num_epochs=6, optim_config={"learning_rate": 1e3})
    trainer = Trainer.resume(tmp_path, train_data, val_data, config=huge)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(TrainingDiverged, match=r"epoch 3, iteration 2/3: loss \S+ is more than 20 times") as caught:
        trainer.train()
    assert np.isfinite(caught.value.loss) and "last good checkpoint (epoch 2)" in str(caught.value)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
    assert Trainer.resume(tmp_path, train_data, val_data).epoch == 2


def test_a_huge_learning_rate_in_the_first_epoch_writes_nothing(tmp_path, train_data):
    config = _config(optim_config={"learning_rate": 1e3})
    with pytest.raises(TrainingDiverged, match=r"epoch 1, iteration 2/3: .*No epoch had completed"):
        Trainer(_attention_model(), _data(1, 20, 40, grid=True), config=config, out_dir=tmp_path / "run").train()
    with pytest.raises(TrainingDiverged, match=r"epoch 1, iteration 2/3: .*No epoch had completed"):
        Trainer(_model("gru"), train_data, config=config, out_dir=tmp_path / "run").train()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("cell_type", ["rnn", "lstm", "gru", "attention"])
def test_normal_training_never_trips_the_divergence_check(train_data, cell_type):
    """The project's recipe (TrainConfig's defaults, dropout 0.5) over many epochs, and small batches at five times
    its learning rate, run to the end, every minibatch loss well below the factor times its running median."""
    from rnncap.train.divergence import LOSS_FACTOR, WINDOW

    recipe = TrainConfig(num_epochs=60, patience=None, progress=False, plot=False)  # one batch of 40 an epoch
    small_batches = dataclasses.replace(recipe, num_epochs=15, batch_size=2, optim_config={"learning_rate": 1e-2})
    for config in (recipe, small_batches):
        if cell_type == "attention":
            model, data = _attention_model(dropout=0.5), _data(1, 20, 40, grid=True)
        else:
            model, data = _model(cell_type, dropout=0.5), train_data
        losses = Trainer(model, data, config=config).train()["iteration_loss"]
        assert len(losses) == config.num_epochs * -(-40 // config.batch_size)  # every minibatch of every epoch
        # The running median alone is a lower bound of the level the rule compares with.
        ratios = [losses[i] / np.median(losses[max(0, i - WINDOW) : i]) for i in range(1, len(losses))]
        assert max(ratios) < LOSS_FACTOR / 3
