"""The gradient checker itself: it must pass correct gradients and catch wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_captions, make_vocab, on
from rnncap import CaptioningRNN, nn
from rnncap.backend import array_module, to_device, to_numpy
from rnncap.gradcheck import check_layer, check_model, numerical_gradient, rel_error


def test_numerical_gradient_of_a_known_function(rng, device):
    host = rng.standard_normal((3, 4))
    x = to_device(host, device)
    xp = array_module(x)
    grad = numerical_gradient(lambda: float(xp.sum(xp.sin(x) * x)), x)
    np.testing.assert_allclose(to_numpy(grad), np.cos(host) * host + np.sin(host), rtol=1e-9)


def test_catches_a_wrong_backward(rng, device):
    def broken_backward(dout, cache):
        dx, dw, db = nn.affine_backward(dout, cache)
        return dx, dw * 1.001, db  # a 0.1% error in one gradient

    inputs = on(device, [rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)])
    errors = check_layer(nn.affine_forward, broken_backward, inputs)
    assert errors[0] < 1e-9 and errors[2] < 1e-9
    assert errors[1] > 1e-4


def test_catches_a_wrong_model_gradient(rng, device):
    class Broken(CaptioningRNN):
        def loss(self, features, captions):
            loss, grads = super().loss(features, captions)
            grads["Wh"] = grads["Wh"].T.copy() if grads["Wh"].shape[0] == grads["Wh"].shape[1] else grads["Wh"] * 2
            return loss, grads

    model = Broken(make_vocab(4), input_dim=3, wordvec_dim=3, hidden_dim=3, cell_type="rnn", dtype=np.float64, rng=0)
    model.to(device)
    errors = check_model(model, rng.standard_normal((2, 3)), make_captions(rng, 2, 5, model.vocab_size))
    assert errors["Wh"] > 1e-3
    assert errors["W_vocab"] < 1e-8


def test_wrong_gradient_count_is_reported(rng):
    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)]
    with pytest.raises(ValueError, match="backward returned 2 gradients for 3 float inputs"):
        check_layer(nn.affine_forward, lambda dout, cache: nn.affine_backward(dout, cache)[:2], inputs)


def test_float32_is_refused(rng):
    x = rng.standard_normal(3).astype(np.float32)
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: float(x.sum()), x)


def test_rel_error():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 2.1)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.zeros(2), np.zeros(3))
