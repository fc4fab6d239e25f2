"""Parity with PyTorch: the NumPy AttentionCaptioner and its torch twin (``torch_attention_twin.py``, autograd over
torch modules) agree on the loss with the doubly stochastic regulariser, on the gradient of every parameter, and on
greedy captions and their attention weights.

float64 comparisons are tight (1e-6 relative, in practice ~1e-15): a mistake in a hand-written backward pass, the
gate order, the gate beta or a normalisation shows up as an O(1) difference.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity tests compare against PyTorch (pip install '.[torch]')")

import torch_attention_twin  # noqa: E402
from helpers import assert_same_loss_and_gradients, make_vocab, parity_captions, redraw_weights  # noqa: E402
from rnncap.models import AttentionCaptioner  # noqa: E402

N, T, L, D, W, H, A, V = 7, 9, 6, 10, 8, 12, 9, 20  # T time steps: captions are (N, T + 1)
NULL, START, END = 0, 1, 2
ALPHA_REG = 0.7


def make_model(dtype=np.float64, seed: int = 0, std: float = 0.3) -> AttentionCaptioner:
    """Every parameter re-drawn with standard deviation ``std`` (no zero biases), so every gradient is O(1)."""
    model = AttentionCaptioner(make_vocab(V - 4), D, L, W, H, A, alpha_reg=ALPHA_REG, dtype=dtype)
    redraw_weights(model, np.random.default_rng(seed), std)
    return model


def make_batch(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Grids (N, L, D) and captions (N, T + 1) from 0 words to a full row, one cut off without ``<END>``."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((N, L, D))
    return features, parity_captions(rng, T, V)


def twin_loss_and_grads(model: AttentionCaptioner, features: np.ndarray, captions: np.ndarray):
    dtype = torch.float64 if model.dtype == np.float64 else torch.float32
    twin = torch_attention_twin.from_numpy_params(model.params, model.alpha_reg, dtype)
    loss = twin(torch.from_numpy(features).to(dtype), torch.from_numpy(captions).long())
    loss.backward()
    return loss.item(), torch_attention_twin.grads_as_numpy(twin)


def test_loss_and_gradients_match_torch_float64():
    model = make_model()
    features, captions = make_batch()
    ours, theirs = model.loss(features, captions), twin_loss_and_grads(model, features, captions)
    assert_same_loss_and_gradients(model, ours, theirs, loss_rtol=1e-10, grad_rtol=1e-6)


def test_regulariser_matches_torch():
    """The loss without the regulariser matches too, so the regulariser is neither missing nor counted twice."""
    model = make_model()
    features, captions = make_batch()
    with_reg = model.loss(features, captions)[0]
    model.alpha_reg = 0.0
    without = model.loss(features, captions)[0]
    assert without == pytest.approx(twin_loss_and_grads(model, features, captions)[0], rel=1e-10)
    assert with_reg - without > 0.1


def test_loss_and_gradients_match_torch_float32():
    model = make_model(dtype=np.float32)
    features, captions = make_batch()
    features = features.astype(np.float32)
    ours, theirs = model.loss(features, captions), twin_loss_and_grads(model, features, captions)
    assert_same_loss_and_gradients(model, ours, theirs, loss_rtol=1e-5, grad_rtol=1e-3)


def test_greedy_samples_and_attention_match_torch():
    model = make_model(seed=3, std=0.5)
    model.params["W_vocab"] *= 4  # confident decisions: no near-ties
    model.params["b_vocab"][END] += 2.0  # some captions end early: the padding rule is exercised
    features = np.random.default_rng(4).standard_normal((16, L, D))
    ours, our_attention = model.sample(features, max_length=12, return_attention=True)
    twin = torch_attention_twin.from_numpy_params(model.params, ALPHA_REG, torch.float64)
    theirs, their_attention = torch_attention_twin.sample(twin, torch.from_numpy(features), max_length=12)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(our_attention, their_attention, rtol=1e-10, atol=1e-14)
    ended = (ours == END).any(axis=1)
    assert ended.any() and (ours[ended] == NULL).any(), "no caption ended early: the padding rule is not tested"
