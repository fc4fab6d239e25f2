"""Self-critical training on the Trainer (rnncap.train.scst): advantages, the rewards rising on a small problem,
history and plot, bit-for-bit resume, both model classes, and the settings' messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from helpers import make_vocab, small_model
from rnncap.models import load_model
from rnncap.train import BEST_FILE, MODEL_FILE, PLOT_FILE, CaptionData, TrainConfig, Trainer
from rnncap.train.config import SCSTConfig
from rnncap.train.scst import SCST_HISTORY, advantages, reward_index, scst_config, scst_step

START, END = 1, 2


def toy_split(rng: np.random.Generator, kind: str, photos: int = 6) -> tuple[CaptionData, object]:
    """A small float64 model and ``photos`` photos, each with 2 captions of its own words (so CIDEr can rise)."""
    model = small_model(kind, rng, scale=0.3, words=10)
    features = rng.standard_normal((photos, *model.feature_shape))
    captions = np.zeros((2 * photos, 6), dtype=np.int32)
    captions[:, 0] = START
    for i in range(photos):
        words = 4 + (np.arange(3) + i) % 10
        captions[2 * i, 1:5] = [*words, END]
        captions[2 * i + 1, 1:4] = [words[0], words[2], END]
    return CaptionData(features, captions, np.repeat(np.arange(photos), 2)), model


def test_advantages_by_baseline() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 0.0, 0.0, 6.0])  # 2 photos, 3 samples each
    advantage, base = advantages(rewards, 3, "greedy", np.array([2.0, 1.0]))
    np.testing.assert_allclose(base, [2, 2, 2, 1, 1, 1])
    np.testing.assert_allclose(advantage, [-1, 0, 1, -1, -1, 5])
    advantage, base = advantages(rewards, 3, "mean")
    np.testing.assert_allclose(base, [2.5, 2, 1.5, 3, 3, 0])  # the mean of the photo's other samples
    np.testing.assert_allclose(advantage, [-1.5, 0, 1.5, -3, -3, 6])
    with pytest.raises(ValueError, match="greedy captions' rewards"):
        advantages(rewards, 3, "greedy")


@pytest.mark.parametrize("kind", ["lstm", "attention"])
@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_rewards_rise(kind: str, baseline: str) -> None:
    rng = np.random.default_rng(0)
    train, model = toy_split(rng, kind)
    config = scst_config(num_samples=8, learning_rate=0.1, baseline=baseline, max_length=6, num_epochs=40,
                         batch_size=3, progress=False, plot=False)  # fmt: skip
    index = reward_index(train, model.vocab_size, END, config.scst)
    greedy_before = index.scores(model.sample(train.features, 6), np.arange(6)).mean()
    history = Trainer(model, train, config=config).train()
    greedy_after = index.scores(model.sample(train.features, 6), np.arange(6)).mean()
    assert np.mean(history["train_reward"][-3:]) > np.mean(history["train_reward"][:3]) + 0.5  # CIDEr-D 0-10
    assert greedy_after > greedy_before + 1.0
    assert len(history["iteration_reward"]) == len(history["iteration_loss"]) == 40 * 2


def test_step_gradient_is_the_weighted_loss_of_its_samples() -> None:
    """scst_step's loss is the surrogate of its samples: it changes sign with the baseline's side."""
    rng = np.random.default_rng(1)
    train, model = toy_split(rng, "gru")
    settings = SCSTConfig(num_samples=4, baseline="mean", max_length=6)
    index = reward_index(train, model.vocab_size, END, settings)
    loss, grads, stats = scst_step(model, train.features[:3], np.arange(3), index, settings, np.random.default_rng(2))
    assert grads.keys() == model.params.keys()
    assert stats.reward == pytest.approx(stats.baseline)  # the mean baseline averages to the mean reward
    assert np.isfinite(loss)


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_resume_is_bit_for_bit(tmp_path, kind: str) -> None:
    rng = np.random.default_rng(3)
    train, model = toy_split(rng, kind)
    val = CaptionData(train.features, train.captions, train.image_idxs)
    config = scst_config(num_samples=3, learning_rate=1e-2, max_length=6, num_epochs=4, batch_size=4,
                         progress=False, plot=False, patience=None)  # fmt: skip
    whole = Trainer(model, train, val, config, tmp_path / "whole")
    whole_history = whole.train()
    _, again = toy_split(np.random.default_rng(3), kind)
    Trainer(again, train, val, dataclasses.replace(config, num_epochs=2), tmp_path / "split").train()
    resumed = Trainer.resume(tmp_path / "split", train, val, config=config)
    resumed_history = resumed.train()
    for key in ("iteration_loss", *SCST_HISTORY, "val_loss", "train_loss"):
        assert resumed_history[key] == whole_history[key], key
    for name in (MODEL_FILE, BEST_FILE):
        a, b = load_model(tmp_path / "split" / name).params, load_model(tmp_path / "whole" / name).params
        for param in a:
            np.testing.assert_array_equal(a[param], b[param])
    assert Trainer.resume(tmp_path / "split", train, val).config.scst == config.scst  # saved with the run


def test_plot_shows_the_rewards(tmp_path) -> None:
    train, model = toy_split(np.random.default_rng(4), "rnn")
    config = scst_config(num_samples=2, max_length=6, num_epochs=1, batch_size=3, progress=False, plot=True)
    Trainer(model, train, config=config, out_dir=tmp_path).train()
    assert (tmp_path / PLOT_FILE).stat().st_size > 1000


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"baseline": "max"}, r"baseline must be one of \['greedy', 'mean'\], got 'max'"),
        ({"baseline": "mean", "num_samples": 1}, "mean baseline needs num_samples >= 2"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1, got 0"),
        ({"max_length": 2.5}, "max_length must be an integer >= 1"),
        ({"count_end": "yes"}, "count_end must be True or False"),
    ],
)
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SCSTConfig(**settings)
    with pytest.raises(ValueError, match="scst must be an SCSTConfig"):
        TrainConfig(scst=5)  # type: ignore[arg-type]


def test_a_photo_without_captions_is_named() -> None:
    model = small_model("lstm", np.random.default_rng(0), words=6)
    data = CaptionData(np.zeros((3, 5)), np.array([[START, 4, END]] * 2), np.array([0, 2]))
    with pytest.raises(ValueError, match="image 1 has no caption"):
        Trainer(model, data, config=scst_config(progress=False))
    assert make_vocab(6)["<END>"] == END


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the NaN scores, on purpose
def test_a_non_finite_step_stops_before_the_update(tmp_path) -> None:
    from rnncap.train import TrainingDiverged

    train, model = toy_split(np.random.default_rng(5), "lstm")
    model.params["b_vocab"] = model.params["b_vocab"] * np.inf  # every score infinite: NaN probabilities
    before = {name: value.copy() for name, value in model.params.items()}
    config = scst_config(num_samples=2, max_length=6, num_epochs=1, batch_size=3, progress=False, plot=False)
    with pytest.raises(TrainingDiverged, match="iteration 1/2: loss nan"):
        Trainer(model, train, config=config, out_dir=tmp_path).train()
    for name, value in before.items():
        np.testing.assert_array_equal(model.params[name], value)
    assert not any(tmp_path.iterdir())
