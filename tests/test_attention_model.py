"""AttentionCaptioner: whole-model gradient checks, the loss against the layers it is made of, decoding with
attention weights (greedy, beam, beam of one = greedy), files, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_captions, make_vocab
from rnncap import CaptioningRNN, nn
from rnncap.decode import beam_search, greedy_search
from rnncap.gradcheck import check_model, numerical_gradient, rel_error
from rnncap.models import MODELS, AttentionCaptioner, ModelFileError, load_model

MODEL_TOLERANCE = 1e-6
NULL, START, END = 0, 1, 2
L, D = 4, 5


def _small_model(rng, dtype=np.float64, alpha_reg=0.7, dropout=0.0, scale=0.5, words=6):
    model = AttentionCaptioner(
        make_vocab(words),
        input_dim=D,
        num_locations=L,
        wordvec_dim=3,
        hidden_dim=6,
        attention_dim=7,
        alpha_reg=alpha_reg,
        dropout=dropout,
        dtype=dtype,
        rng=rng,
    )
    # Weights of order one, so that no gradient entry is so small that rounding noise dominates its check.
    for name, value in model.params.items():
        model.params[name] = (rng.standard_normal(value.shape) * scale).astype(dtype)
    return model


def _batch(rng, n=3, t=7, vocab_size=10):
    return rng.standard_normal((n, L, D)), make_captions(rng, n, t, vocab_size)


@pytest.mark.parametrize("alpha_reg", [0.0, 0.7])
def test_model_gradients(alpha_reg, rng):
    """Every parameter (the attention's, the gate's beta and the initial states' included), with and without the
    doubly stochastic regulariser."""
    model = _small_model(rng, alpha_reg=alpha_reg)
    errors = check_model(model, *_batch(rng, vocab_size=model.vocab_size))
    assert errors.keys() == model.params.keys()
    assert max(errors.values()) < MODEL_TOLERANCE, errors


def test_dropout_gradients_and_modes(rng, tmp_path):
    model = _small_model(rng, dropout=0.4)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    loss = lambda: model.loss(features, captions, rng=np.random.default_rng(3))  # noqa: E731 (one fixed mask)
    _, grads = loss()
    for name, param in model.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda: loss()[0], param)) < MODEL_TOLERANCE, name
    plain = model.loss(features, captions)[0]  # without a generator nothing is dropped
    assert loss()[0] != plain
    model.dropout = 0.0
    assert model.loss(features, captions)[0] == plain
    assert AttentionCaptioner.load(_small_model(rng, dropout=0.4).save(tmp_path / "m.npz")).dropout == 0.4


def test_loss_equals_the_layer_composition(rng):
    """Padding is skipped rather than computed: the loss equals the plain composition of the layers over every
    position, cross-entropy through temporal_softmax_loss plus the regulariser."""
    model = _small_model(rng)
    features, captions = _batch(rng, n=4, t=9, vocab_size=model.vocab_size)
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
    model = _small_model(rng, alpha_reg=0.0)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    plain = model.loss(features, captions)[0]
    model.alpha_reg = 2.0
    assert model.loss(features, captions)[0] > plain


def test_padding_does_not_change_the_loss(rng):
    model = _small_model(rng)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    padded = np.concatenate([captions, np.zeros((3, 4), dtype=captions.dtype)], axis=1)
    loss, grads = model.loss(features, captions)
    loss_padded, grads_padded = model.loss(features, padded)
    assert loss == pytest.approx(loss_padded, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_padded[name], rtol=1e-10, atol=1e-12)


def test_all_padding_batch(rng):
    """Empty captions: no cross-entropy, and the regulariser is the constant alpha_reg * L per caption (no step
    attends), so every gradient is zero."""
    model = _small_model(rng)
    captions = np.zeros((2, 6), dtype=np.int32)
    captions[:, 0] = START
    loss, grads = model.loss(rng.standard_normal((2, L, D)), captions)
    assert loss == pytest.approx(model.alpha_reg * L)
    assert all(not g.any() for g in grads.values())


def test_forward_only_loss_equals_full_loss(rng):
    model = _small_model(rng)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    loss, grads = model.loss(features, captions, compute_grads=False)
    assert grads == {}
    assert loss == model.loss(features, captions)[0]


def test_float32_model_has_float32_gradients(rng):
    model = _small_model(rng, dtype=np.float32)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    loss, grads = model.loss(features.astype(np.float16), captions)  # the store's float16 grids are cast
    assert isinstance(loss, float)
    assert all(grads[k].dtype == np.float32 and grads[k].shape == p.shape for k, p in model.params.items())


def test_parameters_shapes_and_seeded_initialisation():
    model = AttentionCaptioner(make_vocab(10), input_dim=7, num_locations=9, wordvec_dim=3, hidden_dim=5,
                               attention_dim=4)  # fmt: skip
    shapes = {name: value.shape for name, value in model.params.items()}
    assert shapes == {
        "W_init_h": (7, 5), "b_init_h": (5,), "W_init_c": (7, 5), "b_init_c": (5,),
        "W_feat": (7, 4), "b_feat": (4,), "W_h_att": (5, 4), "w_att": (4,), "W_beta": (5, 1), "b_beta": (1,),
        "W_embed": (14, 3), "Wx": (10, 20), "Wh": (5, 20), "b": (20,), "W_vocab": (5, 14), "b_vocab": (14,),
    }  # fmt: skip
    assert all(value.dtype == np.float32 for value in model.params.values())
    again = AttentionCaptioner(make_vocab(10), 7, 9, 3, 5, 4)
    other = AttentionCaptioner(make_vocab(10), 7, 9, 3, 5, 4, rng=1)
    assert all(np.array_equal(model.params[k], again.params[k]) for k in model.params)
    assert not np.array_equal(model.params["Wx"], other.params["Wx"])


# ---------------------------------------------------------------------------------------------- decoding


def _peaked_model(seed=0, words=4):
    """Large weights: next-word distributions far from ties, attention far from uniform."""
    rng = np.random.default_rng(seed)
    model = _small_model(rng, scale=1.5, words=words)
    return model, rng.standard_normal((5, L, D))


def test_sample_returns_attention_distributions():
    model, features = _peaked_model()
    model.params["b_vocab"][END] += 4  # some captions end early, so that the padding of the weights is tested
    captions, attention = model.sample(features, max_length=8, return_attention=True)
    assert captions.shape == (5, 8) and captions.dtype == np.int32
    assert attention.shape == (5, 8, L)
    words = captions != NULL
    np.testing.assert_allclose(attention[words].sum(axis=1), 1.0, rtol=1e-12)
    assert (attention >= 0).all() and not attention[~words].any()
    assert (~words).any(), "no caption ended early: the padding of the weights is not tested"
    np.testing.assert_array_equal(model.sample(features, max_length=8), captions)  # plain call: ids only


def test_sampled_attention_is_what_each_step_used():
    """Replaying a greedy caption word by word reproduces its weights: the weights behind word t are those of the
    step that produced it."""
    model, features = _peaked_model(seed=2)
    captions, attention = model.sample(features, max_length=6, return_attention=True)
    state = model.init_state(features)
    previous = np.full(len(features), START, dtype=np.int32)
    for t in range(6):
        log_probs, state = model.step(state, previous)
        log_probs[:, [NULL, START]] = -np.inf
        alive = captions[:, t] != NULL
        np.testing.assert_array_equal(log_probs.argmax(axis=1)[alive], captions[alive, t])
        np.testing.assert_allclose(model.attention_weights(state)[alive], attention[alive, t], rtol=1e-12)
        previous = np.where(alive, captions[:, t], END).astype(np.int32)


def test_beam_of_one_is_greedy():
    model, features = _peaked_model(seed=1)
    greedy = greedy_search(model, features, 8, return_attention=True)
    beam = beam_search(model, features, 1, 8, return_attention=True)
    np.testing.assert_array_equal(beam[0], greedy[0])
    np.testing.assert_allclose(beam[1], greedy[1], rtol=1e-12)


def test_beam_search_keeps_images_apart_and_beats_greedy():
    """Beams share their image's features in the state (select_state): decoding images together or one by one
    gives the same captions, and beam search finds captions at least as likely as greedy search."""
    model, features = _peaked_model(seed=3)
    together, attention = model.beam_search(features, beam_size=3, max_length=7, return_attention=True)
    for n in range(len(features)):
        alone, alone_attention = model.beam_search(features[n : n + 1], 3, 7, return_attention=True)
        np.testing.assert_array_equal(alone[0], together[n])
        np.testing.assert_allclose(alone_attention[0], attention[n], rtol=1e-12)
    words = together != NULL
    np.testing.assert_allclose(attention[words].sum(axis=1), 1.0, rtol=1e-12)
    assert not attention[~words].any()

    def log_prob(n, tokens):
        state, previous, total = model.init_state(features[n : n + 1]), START, 0.0
        for token in tokens[tokens != NULL]:
            log_probs, state = model.step(state, np.array([previous]))
            total, previous = total + log_probs[0, token], token
        return total

    greedy = model.sample(features, max_length=7)
    for n in range(len(features)):
        assert log_prob(n, together[n]) >= log_prob(n, greedy[n]) - 1e-12


def test_beam_attention_replays_along_the_chosen_caption():
    """The weights returned with a beam caption are those of the steps that wrote its words."""
    model, features = _peaked_model(seed=4)
    captions, attention = model.beam_search(features, beam_size=4, max_length=6, return_attention=True)
    for n in range(len(features)):
        state, previous = model.init_state(features[n : n + 1]), START
        for t, token in enumerate(captions[n][captions[n] != NULL]):
            _, state = model.step(state, np.array([previous]))
            np.testing.assert_allclose(model.attention_weights(state)[0], attention[n, t], rtol=1e-10)
            previous = token


def test_models_without_attention_say_so():
    model = CaptioningRNN(make_vocab(3), input_dim=4, hidden_dim=5, cell_type="lstm")
    with pytest.raises(ValueError, match="CaptioningRNN has no attention weights"):
        greedy_search(model, np.zeros((1, 4)), 3, return_attention=True)
    with pytest.raises(ValueError, match="no attention weights"):
        beam_search(model, np.zeros((1, 4)), 2, 3, return_attention=True)


# ---------------------------------------------------------------------------------------------- files


def test_save_load_round_trip(rng, tmp_path):
    model = _small_model(rng, alpha_reg=0.3)
    model.metadata = {"encoder": "efficientnet-lite2"}
    path = model.save(tmp_path / "attention")
    assert path.name == "attention.npz"
    for loaded in (AttentionCaptioner.load(path), load_model(path)):
        assert type(loaded) is AttentionCaptioner
        assert loaded.config() == model.config() and loaded.metadata == model.metadata
        assert all(np.array_equal(loaded.params[k], model.params[k]) for k in model.params)
    features, captions = _batch(rng, vocab_size=model.vocab_size)
    assert load_model(path).loss(features, captions)[0] == model.loss(features, captions)[0]
    assert load_model(path, dtype=np.float32).params["Wx"].dtype == np.float32
    assert MODELS["AttentionCaptioner"] is AttentionCaptioner


def test_files_of_the_other_model_class_are_refused(rng, tmp_path):
    path = _small_model(rng).save(tmp_path / "attention.npz")
    with pytest.raises(ModelFileError, match="holds a 'AttentionCaptioner' model, not a CaptioningRNN"):
        CaptioningRNN.load(path)
    rnn = CaptioningRNN(make_vocab(3), input_dim=4).save(tmp_path / "rnn.npz")
    with pytest.raises(ModelFileError, match="not a AttentionCaptioner"):
        AttentionCaptioner.load(rnn)


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((2, D)), r"features must have shape \(N, L, D\) = \(N, 4, 5\), got \(2, 5\) \(pooled features\?"),
        (np.zeros((2, L + 1, D)), r"features must have shape \(N, L, D\) = \(N, 4, 5\), got \(2, 5, 5\)$"),
        (np.zeros((2, L, D + 1)), r"got \(2, 4, 6\)"),
        (np.zeros((0, L, D)), "empty batch"),
        (np.full((2, L, D), "a"), "numeric"),
        (np.where(np.arange(2)[:, None, None] == 1, np.nan, np.zeros((2, L, D))), r"NaN or infinite .*rows \[1\]"),
    ],
)
def test_bad_features_are_refused(features, message, rng):
    model = _small_model(rng)
    with pytest.raises(ValueError, match=message):
        model.loss(features, np.ones((len(features), 5), dtype=int))
    with pytest.raises(ValueError, match=message):
        model.sample(features)


@pytest.mark.parametrize(
    ("captions", "message"),
    [
        (np.full((2, 5), 10), r"token id 10 is outside the vocabulary \[0, 10\)"),
        (np.ones((2, 5)), "integer token ids"),
        (np.ones((3, 5), dtype=int), r"captions must have shape \(2, T\)"),
        (np.ones((2, 1), dtype=int), "T >= 2"),
    ],
)
def test_bad_captions_are_refused(captions, message, rng):
    with pytest.raises(ValueError, match=message):
        _small_model(rng).loss(np.zeros((2, L, D)), captions)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_locations": 0}, "num_locations must be a positive integer"),
        ({"attention_dim": 2.5}, "attention_dim must be a positive integer"),
        ({"alpha_reg": -1.0}, "alpha_reg must be a finite number >= 0"),
        ({"alpha_reg": float("nan")}, "alpha_reg must be"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dtype": np.float16}, "float32 or float64"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionCaptioner(make_vocab(3), **kwargs)
