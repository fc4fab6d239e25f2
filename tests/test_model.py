"""CaptioningRNN: CS231n's published losses, whole-model gradient checks, and clear errors for bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import make_captions, make_vocab
from rnncap import CaptioningRNN
from rnncap.gradcheck import check_model, numerical_gradient, rel_error

MODEL_TOLERANCE = 1e-6
CELLS = ["rnn", "lstm", "gru"]


def _cs231n_model(cell_type: str) -> CaptioningRNN:
    """CS231n's fixed-parameter set-up: every parameter a linspace over [-1.4, 1.3]."""
    word_to_idx = {"<NULL>": 0, "cat": 2, "dog": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'dog' has id 3 in a vocabulary of size 3, as in CS231n
        model = CaptioningRNN(
            word_to_idx, input_dim=20, wordvec_dim=30, hidden_dim=40, cell_type=cell_type, dtype=np.float64
        )
    for name, value in model.params.items():
        model.params[name] = np.linspace(-1.4, 1.3, num=value.size).reshape(value.shape)
    return model


@pytest.mark.parametrize(
    ("cell_type", "feature_range", "expected"),
    [("rnn", (-1.5, 0.3), 9.83235591003), ("lstm", (-0.5, 1.7), 9.82445935443)],
)
def test_cs231n_published_loss(cell_type, feature_range, expected):
    N, D, T = 10, 20, 13
    model = _cs231n_model(cell_type)
    features = np.linspace(*feature_range, num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % model.vocab_size).reshape(N, T)
    loss, _ = model.loss(features, captions)
    assert abs(loss - expected) < 1e-10


def _small_model(cell_type, rng, dtype=np.float64):
    model = CaptioningRNN(
        make_vocab(6), input_dim=5, wordvec_dim=4, hidden_dim=6, cell_type=cell_type, dtype=dtype, rng=rng
    )
    # Weights of order one, so that no gradient entry is so small that rounding noise dominates its check.
    for name, value in model.params.items():
        model.params[name] = (rng.standard_normal(value.shape) * 0.5).astype(dtype)
    return model


@pytest.mark.parametrize("cell_type", CELLS)
def test_model_gradients(cell_type, rng):
    model = _small_model(cell_type, rng)
    features = rng.standard_normal((3, 5))
    captions = make_captions(rng, 3, 7, model.vocab_size)
    errors = check_model(model, features, captions)
    assert max(errors.values()) < MODEL_TOLERANCE, errors


@pytest.mark.parametrize("cell_type", CELLS)
def test_float32_model_has_float32_gradients(cell_type, rng):
    model = _small_model(cell_type, rng, dtype=np.float32)
    features = rng.standard_normal((3, 5))  # float64 features are cast, not the model upcast
    loss, grads = model.loss(features, make_captions(rng, 3, 7, model.vocab_size))
    assert isinstance(loss, float)
    assert all(grads[name].dtype == np.float32 and grads[name].shape == p.shape for name, p in model.params.items())


def test_parameters_follow_cs231n_names_and_shapes():
    model = CaptioningRNN(make_vocab(10), input_dim=7, wordvec_dim=3, hidden_dim=5, cell_type="lstm")
    shapes = {name: value.shape for name, value in model.params.items()}
    assert shapes == {
        "W_embed": (14, 3),
        "W_proj": (7, 5),
        "b_proj": (5,),
        "Wx": (3, 20),
        "Wh": (5, 20),
        "b": (20,),
        "W_vocab": (5, 14),
        "b_vocab": (14,),
    }
    assert all(value.dtype == np.float32 for value in model.params.values())


def test_initialisation_is_seeded():
    a = CaptioningRNN(make_vocab(5), 4, 3, 2, rng=7)
    b = CaptioningRNN(make_vocab(5), 4, 3, 2, rng=7)
    c = CaptioningRNN(make_vocab(5), 4, 3, 2, rng=8)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["Wx"], c.params["Wx"])


def test_padding_does_not_change_the_loss(rng):
    """Extra <NULL> columns are ignored: the loss and gradients stay the same."""
    model = _small_model("lstm", rng)
    features = rng.standard_normal((3, 5))
    captions = make_captions(rng, 3, 7, model.vocab_size)
    padded = np.concatenate([captions, np.zeros((3, 4), dtype=captions.dtype)], axis=1)
    loss, grads = model.loss(features, captions)
    loss_padded, grads_padded = model.loss(features, padded)
    assert loss == pytest.approx(loss_padded, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_padded[name], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("features", "captions", "message"),
    [
        (np.zeros((2, 4)), np.ones((2, 5), dtype=int), r"features must have shape \(N, 5\)"),
        (np.zeros((0, 5)), np.ones((0, 5), dtype=int), "empty batch"),
        (
            np.array([[0, 0, np.nan, 0, 0], [0] * 5]),
            np.ones((2, 5), dtype=int),
            r"NaN or infinite .*rows \[0\]",
        ),
        (np.array([[0, 0, np.inf, 0, 0]]), np.ones((1, 5), dtype=int), "NaN or infinite"),
        (np.zeros((2, 5)), np.full((2, 5), 10), r"token id 10 is outside the vocabulary \[0, 10\)"),
        (np.zeros((2, 5)), np.full((2, 5), -1), "token id -1 is outside"),
        (np.zeros((2, 5)), np.ones((2, 5)), "integer token ids"),
        (np.zeros((2, 5)), np.ones((3, 5), dtype=int), r"captions must have shape \(2, T\)"),
        (np.zeros((2, 5)), np.ones((2, 1), dtype=int), "T >= 2"),
    ],
)
def test_bad_input_is_refused(features, captions, message):
    model = CaptioningRNN(make_vocab(6), input_dim=5, wordvec_dim=4, hidden_dim=3)
    with pytest.raises(ValueError, match=message):
        model.loss(features, captions)


def test_bad_features_are_refused_when_sampling():
    model = CaptioningRNN(make_vocab(6), input_dim=5, wordvec_dim=4, hidden_dim=3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.sample(np.full((1, 5), np.nan))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell_type": "transformer"}, "cell_type must be one of"),
        ({"hidden_dim": 0}, "hidden_dim must be a positive integer"),
        ({"dtype": np.float16}, "float32 or float64"),
    ],
)
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CaptioningRNN(make_vocab(3), **{"input_dim": 4, **kwargs})


def test_vocabulary_must_have_null():
    with pytest.raises(ValueError, match="<NULL>"):
        CaptioningRNN({"a": 0, "b": 1}, input_dim=4)


def test_all_padding_batch_has_zero_loss(rng):
    """A batch whose targets are all <NULL> (an empty caption) contributes nothing, without crashing."""
    model = _small_model("gru", rng)
    captions = np.zeros((2, 6), dtype=np.int32)
    captions[:, 0] = 1
    loss, grads = model.loss(rng.standard_normal((2, 5)), captions)
    assert loss == 0.0
    assert all(not g.any() for g in grads.values())


def test_masked_loss_equals_cs231n_layer_composition(rng):
    """The model skips padded rows; the result equals temporal_affine + temporal_softmax_loss on every row."""
    from rnncap import nn

    model = _small_model("lstm", rng)
    features = rng.standard_normal((4, 5))
    captions = make_captions(rng, 4, 9, model.vocab_size)
    p = model.params
    h0, _ = nn.affine_forward(features, p["W_proj"], p["b_proj"])
    x, _ = nn.word_embedding_forward(captions[:, :-1], p["W_embed"])
    h, _ = nn.lstm_forward(x, h0, p["Wx"], p["Wh"], p["b"])
    scores, _ = nn.temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
    expected, _ = nn.temporal_softmax_loss(scores, captions[:, 1:], captions[:, 1:] != 0)
    assert model.loss(features, captions)[0] == pytest.approx(expected, rel=1e-12)


def test_forward_only_loss_equals_full_loss(rng):
    model = _small_model("lstm", rng)
    features = rng.standard_normal((4, 5))
    captions = make_captions(rng, 4, 9, model.vocab_size)
    loss, grads = model.loss(features, captions, compute_grads=False)
    assert grads == {}
    assert loss == model.loss(features, captions)[0]


def test_dropout_gradients_and_modes(rng, tmp_path):
    model = _small_model("lstm", rng)
    model.dropout = 0.4
    features = rng.standard_normal((3, 5))
    captions = make_captions(rng, 3, 7, model.vocab_size)
    loss = lambda: model.loss(features, captions, rng=np.random.default_rng(3))  # noqa: E731 (one fixed mask)
    _, grads = loss()
    for name, param in model.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda: loss()[0], param)) < MODEL_TOLERANCE, name
    # Without a generator (validation, decoding) nothing is dropped; with one, the loss changes.
    model.dropout = 0.0
    plain = model.loss(features, captions)[0]
    model.dropout = 0.4
    assert model.loss(features, captions)[0] == plain
    assert loss()[0] != plain
    assert CaptioningRNN.load(model.save(tmp_path / "m.npz")).dropout == 0.4
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        CaptioningRNN(make_vocab(3), 4, dropout=1.0)
