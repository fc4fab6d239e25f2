"""CaptioningRNN: CS231n's published losses and parameter names, the loss as the composition of CS231n's layers,
its settings. What every model does (gradients, padding, dropout, files, decoding, errors) is in test_contract.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from helpers import make_captions, make_vocab, small_model
from rnncap import CaptioningRNN, nn


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
def test_cs231n_published_loss(cell_type, feature_range, expected, device):
    N, D, T = 10, 20, 13
    model = _cs231n_model(cell_type).to(device)
    features = np.linspace(*feature_range, num=N * D).reshape(N, D)
    captions = (np.arange(N * T) % model.vocab_size).reshape(N, T)
    loss, _ = model.loss(features, captions)
    assert abs(loss - expected) < 1e-10


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


def test_positional_arguments_are_input_wordvec_hidden_dims():
    a = CaptioningRNN(make_vocab(5), 4, 3, 2, rng=7)
    b = CaptioningRNN(make_vocab(5), input_dim=4, wordvec_dim=3, hidden_dim=2, rng=7)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)


def test_an_unknown_cell_is_refused():
    with pytest.raises(ValueError, match="cell_type must be one of"):
        CaptioningRNN(make_vocab(3), input_dim=4, cell_type="transformer")


def test_masked_loss_equals_cs231n_layer_composition(rng):
    """The model skips padded rows; the result equals temporal_affine + temporal_softmax_loss on every row."""
    model = small_model("lstm", rng)
    features = rng.standard_normal((4, 5))
    captions = make_captions(rng, 4, 9, model.vocab_size)
    p = model.params
    h0, _ = nn.affine_forward(features, p["W_proj"], p["b_proj"])
    x, _ = nn.word_embedding_forward(captions[:, :-1], p["W_embed"])
    h, _ = nn.lstm_forward(x, h0, p["Wx"], p["Wh"], p["b"])
    scores, _ = nn.temporal_affine_forward(h, p["W_vocab"], p["b_vocab"])
    expected, _ = nn.temporal_softmax_loss(scores, captions[:, 1:], captions[:, 1:] != 0)
    assert model.loss(features, captions)[0] == pytest.approx(expected, rel=1e-12)
