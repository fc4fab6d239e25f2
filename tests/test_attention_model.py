"""AttentionCaptioner: the loss against the layers it is made of and its regulariser, parameter shapes, the
attention weights of greedy and beam decoding replayed step by step, and its own settings and messages. What
every model does (gradients, padding, dropout, files, decoding, errors) is in test_contract.py."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_vocab, model_batch, peaked_model, small_model
from rnncap import nn
from rnncap.backend import to_numpy
from rnncap.gradcheck import check_model
from rnncap.models import AttentionCaptioner

MODEL_TOLERANCE = 1e-6
NULL, START, END = 0, 1, 2
L, D = 4, 5  # small_model("attention")'s grid: L locations of D channels


def test_gradients_without_the_regulariser(rng, device):
    """Every parameter with alpha_reg = 0 (test_contract checks them with the regulariser)."""
    model = small_model("attention", rng, alpha_reg=0.0).to(device)
    errors = check_model(model, *model_batch(model, rng))
    assert errors.keys() == model.params.keys()
    assert max(errors.values()) < MODEL_TOLERANCE, errors


def test_loss_equals_the_layer_composition(rng):
    """Padding is skipped rather than computed: the loss equals the plain composition of the layers over every
    position, cross-entropy through temporal_softmax_loss plus the regulariser."""
    model = small_model("attention", rng)
    features, captions = model_batch(model, rng, n=4, t=9)
    p = model.params
    mean = features.mean(axis=1)
    h0, c0 = np.tanh(mean @ p["W_init_h"] + p["b_init_h"]), np.tanh(mean @ p["W_init_c"] + p["b_init_c"])
    x, _ = nn.word_embedding_forward(captions[:, :-1], p["W_embed"])
    feat_proj = features @ p["W_feat"] + p["b_feat"]
    decoder = [p[k] for k in ("Wx", "Wh", "b", "W_h_att", "w_att", "W_beta", "b_beta")]
    h, alpha, _ = nn.attention_lstm_forward(x, features, feat_proj, h0, c0, *decoder)
    scores, _ = nn.temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
    mask = captions[:, 1:] != NULL
    expected, _ = nn.temporal_softmax_loss(scores, captions[:, 1:], mask)
    expected += model.alpha_reg * ((1 - (alpha * mask[:, :, None]).sum(axis=1)) ** 2).sum() / len(captions)
    assert model.loss(features, captions)[0] == pytest.approx(expected, rel=1e-12)


def test_regulariser_adds_to_the_loss(rng):
    model = small_model("attention", rng, alpha_reg=0.0)
    features, captions = model_batch(model, rng)
    plain = model.loss(features, captions)[0]
    model.alpha_reg = 2.0
    assert model.loss(features, captions)[0] > plain


def test_parameter_shapes_and_positional_arguments():
    model = AttentionCaptioner(make_vocab(10), input_dim=7, num_locations=9, wordvec_dim=3, hidden_dim=5,
                               attention_dim=4)  # fmt: skip
    shapes = {name: value.shape for name, value in model.params.items()}
    assert shapes == {
        "W_init_h": (7, 5), "b_init_h": (5,), "W_init_c": (7, 5), "b_init_c": (5,),
        "W_feat": (7, 4), "b_feat": (4,), "W_h_att": (5, 4), "w_att": (4,), "W_beta": (5, 1), "b_beta": (1,),
        "W_embed": (14, 3), "Wx": (10, 20), "Wh": (5, 20), "b": (20,), "W_vocab": (5, 14), "b_vocab": (14,),
    }  # fmt: skip
    assert all(value.dtype == np.float32 for value in model.params.values())
    positional = AttentionCaptioner(make_vocab(10), 7, 9, 3, 5, 4)  # input, locations, wordvec, hidden, attention
    assert all(np.array_equal(model.params[k], positional.params[k]) for k in model.params)


# ---------------------------------------------------------------------------------------------- decoding


def test_sample_returns_attention_distributions(device):
    model, features = peaked_model("attention")
    model.params["b_vocab"][END] += 4  # some captions end early, so that the padding of the weights is tested
    model.to(device)
    captions, attention = model.sample(features, max_length=8, return_attention=True)
    assert captions.shape == (5, 8) and captions.dtype == np.int32
    assert attention.shape == (5, 8, L)
    words = captions != NULL
    np.testing.assert_allclose(attention[words].sum(axis=1), 1.0, rtol=1e-12)
    assert (attention >= 0).all() and not attention[~words].any()
    assert (~words).any(), "no caption ended early: the padding of the weights is not tested"
    np.testing.assert_array_equal(model.sample(features, max_length=8), captions)  # plain call: ids only


def test_sampled_attention_is_what_each_step_used(device):
    """Replaying a greedy caption word by word reproduces its weights: the weights behind word t are those of the
    step that produced it."""
    model, features = peaked_model("attention", seed=2)
    model.to(device)
    captions, attention = model.sample(features, max_length=6, return_attention=True)
    state = model.init_state(features)
    previous = np.full(len(features), START, dtype=np.int32)
    for t in range(6):
        log_probs, state = model.step(state, previous)
        log_probs = to_numpy(log_probs)
        log_probs[:, [NULL, START]] = -np.inf
        alive = captions[:, t] != NULL
        np.testing.assert_array_equal(log_probs.argmax(axis=1)[alive], captions[alive, t])
        weights = to_numpy(model.attention_weights(state))
        np.testing.assert_allclose(weights[alive], attention[alive, t], rtol=1e-12)
        previous = np.where(alive, captions[:, t], END).astype(np.int32)


def test_beam_attention_replays_along_the_chosen_caption(device):
    """The weights returned with a beam caption are those of the steps that wrote its words."""
    model, features = peaked_model("attention", seed=4)
    model.to(device)
    captions, attention = model.beam_search(features, beam_size=4, max_length=6, return_attention=True)
    for n in range(len(features)):
        state, previous = model.init_state(features[n : n + 1]), START
        for t, token in enumerate(captions[n][captions[n] != NULL]):
            _, state = model.step(state, np.array([previous]))
            np.testing.assert_allclose(to_numpy(model.attention_weights(state))[0], attention[n, t], rtol=1e-10)
            previous = token


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((2, D)), r"features must have shape \(N, L, D\) = \(N, 4, 5\), got \(2, 5\) \(pooled features\?"),
        (np.zeros((2, L + 1, D)), r"features must have shape \(N, L, D\) = \(N, 4, 5\), got \(2, 5, 5\)$"),
        (np.zeros((2, L, D + 1)), r"got \(2, 4, 6\)"),
    ],
)
def test_features_of_another_shape_are_named(features, message, rng):
    model = small_model("attention", rng)
    with pytest.raises(ValueError, match=message):
        model.loss(features, np.ones((len(features), 5), dtype=int))
    with pytest.raises(ValueError, match=message):
        model.sample(features)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_locations": 0}, "num_locations must be a positive integer"),
        ({"attention_dim": 2.5}, "attention_dim must be a positive integer"),
        ({"alpha_reg": -1.0}, "alpha_reg must be a finite number >= 0"),
        ({"alpha_reg": float("nan")}, "alpha_reg must be"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionCaptioner(make_vocab(3), **kwargs)
