"""Multinomial sampling (rnncap.sampling.sample_captions) and the policy-gradient surrogate loss it feeds: shapes and
rules, the drawn distribution, the log-probabilities the loss recomputes, and float64 gradient checks."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import small_model
from rnncap.backend import to_numpy
from rnncap.decode import never_drawn
from rnncap.gradcheck import numerical_gradient, rel_error
from rnncap.sampling import sample_captions
from rnncap.train.scst import with_start

NULL, START, END, UNK = 0, 1, 2, 3
POLICY_KINDS = ("rnn", "lstm", "gru", "attention")


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_samples_follow_the_rules(kind: str, rng: np.random.Generator, device: str) -> None:
    model = small_model(kind, rng, scale=0.3).to(device)
    features = rng.standard_normal((4, *model.feature_shape))
    samples = sample_captions(model, features, 3, 9, np.random.default_rng(5))
    assert samples.ids.shape == samples.log_probs.shape == (12, 9) and samples.ids.dtype == np.int32
    assert samples.images.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert not np.isin(samples.ids[:, 0], never_drawn(model)).any()
    after_end = np.cumsum(samples.ids == END, axis=1) - (samples.ids == END) > 0  # strictly after the first <END>
    assert (samples.ids[after_end] == NULL).all() and (samples.log_probs[after_end] == 0).all()
    words = samples.ids[~after_end]
    assert not np.isin(words, [NULL, START, UNK]).any() and (samples.log_probs[~after_end] < 0).all()
    again = sample_captions(model, features, 3, 9, np.random.default_rng(5))
    np.testing.assert_array_equal(again.ids, samples.ids)  # a pure function of the generator
    assert len({tuple(r) for r in samples.ids.tolist()}) > 1  # samples, not one caption repeated


def test_first_words_follow_the_model_distribution(rng: np.random.Generator, device: str) -> None:
    """Frequencies of 20,000 first words against the model's next-word probabilities without the never-drawn ids."""
    model = small_model("lstm", rng, scale=0.6).to(device)
    features = rng.standard_normal((1, *model.feature_shape))
    samples = sample_captions(model, features, 20_000, 1, np.random.default_rng(1))
    log_probs, _ = model.step(model.init_state(features), np.array([START]))
    probs = np.exp(to_numpy(log_probs)[0])
    probs[never_drawn(model)] = 0
    probs /= probs.sum()
    frequency = np.bincount(samples.ids[:, 0], minlength=model.vocab_size) / 20_000
    np.testing.assert_allclose(frequency, probs, atol=4 * np.sqrt(probs.max() / 20_000))
    np.testing.assert_allclose(np.exp(samples.log_probs[:, 0]), probs[samples.ids[:, 0]], rtol=1e-10)


def test_bad_arguments_are_refused(rng: np.random.Generator) -> None:
    model = small_model("lstm", rng)
    features = rng.standard_normal((2, *model.feature_shape))
    with pytest.raises(ValueError, match="num_samples"):
        sample_captions(model, features, 0, 5, rng)
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        sample_captions(model, features, 2, 5, 3)  # type: ignore[arg-type]


def policy_batch(kind: str, rng: np.random.Generator, device: str = "cpu"):
    """A float64 model on ``device``, 3 photos with 4 samples each (fixed), and fixed advantages of both signs."""
    model = small_model(kind, rng, scale=0.5).to(device)
    features = rng.standard_normal((3, *model.feature_shape))
    samples = sample_captions(model, features, 4, 6, np.random.default_rng(2))
    advantage = rng.standard_normal(12)
    return model, features[samples.images], with_start(samples.ids, START), advantage, samples


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_surrogate_loss_is_the_sampled_log_probabilities(kind: str, rng: np.random.Generator, device: str) -> None:
    """The re-run forward computes the very log-probabilities the sampler drew with (same distribution)."""
    model, features, captions, advantage, samples = policy_batch(kind, rng, device)
    loss, _ = model.loss(features, captions, compute_grads=False, caption_weights=advantage)
    expected = -np.dot(advantage, samples.log_probs.sum(axis=1)) / len(advantage)
    assert loss == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_surrogate_gradients_match_numeric_ones(kind: str, rng: np.random.Generator, device: str) -> None:
    model, features, captions, advantage, _ = policy_batch(kind, rng, device)
    _, grads = model.loss(features, captions, caption_weights=advantage)
    assert grads.keys() == model.params.keys()
    for name, param in model.params.items():

        def surrogate() -> float:
            return model.loss(features, captions, compute_grads=False, caption_weights=advantage)[0]

        numeric = numerical_gradient(surrogate, param, 1e-4)
        assert np.abs(to_numpy(numeric)).max() > 1e-6, f"{name}: gradient too small to check"
        assert rel_error(grads[name], numeric) < 1e-6, name


@pytest.mark.parametrize("kind", POLICY_KINDS)
def test_caption_weights_are_checked(kind: str, rng: np.random.Generator, device: str) -> None:
    model, features, captions, advantage, _ = policy_batch(kind, rng, device)
    with pytest.raises(ValueError, match=r"caption_weights must be \(12,\)"):
        model.loss(features, captions, caption_weights=advantage[:5])
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.loss(features, captions, caption_weights=np.full(12, np.nan))
    captions[0, 1] = UNK
    with pytest.raises(ValueError, match="leaves out"):
        model.loss(features, captions, caption_weights=advantage)
