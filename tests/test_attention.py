"""The soft-attention layers: numeric gradient checks (float64), proper attention distributions, the location mask,
the regulariser's values, and agreement of the decoder recurrence with the step layers it is built from."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import on
from rnncap import nn
from rnncap.backend import array_module, to_device, to_numpy
from rnncap.gradcheck import check_layer, numerical_gradient, rel_error

LAYER_TOLERANCE = 1e-7  # the project's bound for layers (the issue asks 1e-6 for the attention layers)
N, T, W, L, D, A, H = 3, 4, 5, 6, 7, 8, 9


def _assert_all_close(errors):
    checked = [e for e in errors if e is not None]
    assert checked and max(checked) < LAYER_TOLERANCE, errors


def _mask(device="cpu"):
    """Rows with 6, 4 and 1 locations: grids of different sizes, and the extreme of a single location."""
    mask = np.ones((N, L), dtype=bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    return to_device(mask, device)


def _step_inputs(rng, device="cpu"):
    return on(
        device,
        [
            rng.standard_normal((N, L, D)),  # features
            rng.standard_normal((N, L, A)),  # feat_proj
            rng.standard_normal((N, H)),  # prev_h
            rng.standard_normal((H, A)) * 0.3,  # W_h_att
            rng.standard_normal(A) * 0.5,  # w_att: moderate scores, so that no weight (and gradient) is nearly 0
        ],
    )


def _decoder_inputs(rng, device="cpu"):
    return on(
        device,
        [
            rng.standard_normal((N, T, W)),  # x
            rng.standard_normal((N, L, D)),  # features
            rng.standard_normal((N, L, A)),  # feat_proj
            rng.standard_normal((N, H)),  # h0
            rng.standard_normal((N, H)),  # c0
            rng.standard_normal((W + D, 4 * H)) * 0.3,  # Wx
            rng.standard_normal((H, 4 * H)) * 0.3,  # Wh
            rng.standard_normal(4 * H),  # b
            rng.standard_normal((H, A)) * 0.3,  # W_h_att
            rng.standard_normal(A) * 0.5,  # w_att
            rng.standard_normal((H, 1)),  # W_beta
            rng.standard_normal(1),  # b_beta
        ],
    )


@pytest.mark.parametrize("masked", [False, True])
def test_attention_step_gradients(masked, rng, device):
    mask = _mask(device) if masked else None
    forward = lambda *inputs: nn.attention_step_forward(*inputs, mask=mask)  # noqa: E731
    _assert_all_close(check_layer(forward, nn.attention_step_backward, _step_inputs(rng, device)))


def test_attention_gate_gradients(rng, device):
    inputs = [
        rng.standard_normal((N, D)),
        rng.standard_normal((N, H)),
        rng.standard_normal((H, 1)),
        rng.standard_normal(1),
    ]
    _assert_all_close(check_layer(nn.attention_gate_forward, nn.attention_gate_backward, on(device, inputs)))


@pytest.mark.parametrize("masked", [False, True])
def test_attention_decoder_gradients(masked, rng, device):
    """Every input of the whole recurrence, with upstream gradients on both the hidden states and the weights."""
    mask = _mask(device) if masked else None
    forward = lambda *inputs: nn.attention_lstm_forward(*inputs, mask=mask)  # noqa: E731
    _assert_all_close(check_layer(forward, nn.attention_lstm_backward, _decoder_inputs(rng, device), rng=1))


def test_doubly_stochastic_loss_gradient_and_value(rng, device):
    alpha = rng.random((N, T, L))
    mask = rng.random((N, T)) > 0.3
    device_alpha, device_mask = on(device, [alpha, mask])
    loss, dalpha = nn.doubly_stochastic_loss(device_alpha, device_mask, 0.7)
    cover = (alpha * mask[:, :, None]).sum(axis=1)  # (N, L)
    assert loss == pytest.approx(0.7 * ((1 - cover) ** 2).sum() / N, rel=1e-12)
    numeric = numerical_gradient(lambda: nn.doubly_stochastic_loss(device_alpha, device_mask, 0.7)[0], device_alpha)
    assert rel_error(dalpha, numeric) < 1e-9
    assert not to_numpy(dalpha)[~mask].any()  # steps that do not count get no gradient


def test_doubly_stochastic_loss_is_zero_for_full_coverage():
    """Each location attended with total weight exactly 1 over the caption: T = L steps, step t looks at l = t."""
    alpha = np.tile(np.eye(L), (N, 1, 1))  # (N, L, L): T = L
    loss, dalpha = nn.doubly_stochastic_loss(alpha, np.ones((N, L), dtype=bool), 1.0)
    assert loss == 0.0 and not dalpha.any()


@pytest.mark.parametrize("masked", [False, True])
def test_attention_weights_are_distributions(masked, rng, device):
    """At every step: weights >= 0, summing to 1 over the locations that exist, exactly 0 elsewhere."""
    mask = _mask() if masked else np.ones((N, L), dtype=bool)
    inputs = _decoder_inputs(rng, device)
    _, alpha, _ = nn.attention_lstm_forward(*inputs, mask=to_device(mask, device) if masked else None)
    alpha = to_numpy(alpha)
    assert alpha.shape == (N, T, L)
    assert (alpha >= 0).all()
    np.testing.assert_allclose(alpha.sum(axis=2), 1.0, rtol=1e-12)
    assert not alpha[np.broadcast_to(~mask[:, None, :], alpha.shape)].any()
    if masked:
        np.testing.assert_array_equal(alpha[2, :, 0], 1.0)  # a single location takes all the weight


def test_softmax_is_stable_for_huge_scores(rng):
    """Scores of 1e6 neither overflow nor produce NaN: the softmax subtracts each row's maximum first."""
    features, feat_proj, prev_h, W_h_att, w_att = _step_inputs(rng)
    context, alpha, _ = nn.attention_step_forward(features, feat_proj, prev_h, W_h_att, w_att * 1e6)
    assert np.isfinite(alpha).all() and np.isfinite(context).all()
    np.testing.assert_allclose(alpha.sum(axis=1), 1.0)
    np.testing.assert_allclose(alpha.max(axis=1), 1.0)  # saturated: one location wins


def test_context_is_the_weighted_mean_of_the_features(rng):
    features, feat_proj, prev_h, W_h_att, w_att = _step_inputs(rng)
    context, alpha, _ = nn.attention_step_forward(features, feat_proj, prev_h, W_h_att, w_att)
    scores = np.tanh(feat_proj + (prev_h @ W_h_att)[:, None, :]) @ w_att
    expected_alpha = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(alpha, expected_alpha, rtol=1e-12)
    np.testing.assert_allclose(context, np.einsum("nl,nld->nd", expected_alpha, features), rtol=1e-12)


def test_decoder_equals_the_step_layers_in_a_loop(rng, device):
    """The recurrence is attention_step + attention_gate + lstm_step, step after step, on [x_t; beta * context]."""
    x, features, feat_proj, h0, c0, Wx, Wh, b, W_h_att, w_att, W_beta, b_beta = _decoder_inputs(rng, device)
    h, alpha, _ = nn.attention_lstm_forward(x, features, feat_proj, h0, c0, Wx, Wh, b, W_h_att, w_att, W_beta, b_beta)
    prev_h, prev_c = h0, c0
    xp = array_module(x)
    for t in range(T):
        context, alpha_t, _ = nn.attention_step_forward(features, feat_proj, prev_h, W_h_att, w_att)
        gated, _ = nn.attention_gate_forward(context, prev_h, W_beta, b_beta)
        prev_h, prev_c, _ = nn.lstm_step_forward(xp.concatenate([x[:, t], gated], axis=1), prev_h, prev_c, Wx, Wh, b)
        np.testing.assert_allclose(to_numpy(alpha[:, t]), to_numpy(alpha_t), rtol=1e-12)
        np.testing.assert_allclose(to_numpy(h[:, t]), to_numpy(prev_h), rtol=1e-10, atol=1e-14)


def test_decoder_can_skip_the_features_gradient(rng, device):
    inputs = _decoder_inputs(rng, device)
    dh, dalpha = on(device, [rng.standard_normal((N, T, H)), rng.standard_normal((N, T, L))])
    full = nn.attention_lstm_backward(dh, dalpha, nn.attention_lstm_forward(*inputs)[2])
    partial = nn.attention_lstm_backward(dh, dalpha, nn.attention_lstm_forward(*inputs)[2], features_grad=False)
    assert partial.dfeatures is None and full.dfeatures is not None
    for name in partial._fields:
        if name != "dfeatures":
            np.testing.assert_array_equal(to_numpy(getattr(partial, name)), to_numpy(getattr(full, name)), err_msg=name)


def test_float32_stays_float32(rng, device):
    inputs = [a.astype(np.float32) for a in _decoder_inputs(rng, device)]
    h, alpha, cache = nn.attention_lstm_forward(*inputs)
    assert h.dtype == alpha.dtype == np.float32
    grads = nn.attention_lstm_backward(h, alpha, cache)
    assert all(g.dtype == np.float32 for g in grads)


def test_a_cache_serves_one_backward_pass(rng):
    """The backward pass reuses the cached activations as scratch space; a second pass must fail, not mislead."""
    _, alpha, cache = nn.attention_lstm_forward(*_decoder_inputs(rng))
    dh = np.ones((N, T, H))
    nn.attention_lstm_backward(dh, None, cache)
    with pytest.raises(RuntimeError, match="already used by a backward pass"):
        nn.attention_lstm_backward(dh, None, cache)
    context, alpha, cache = nn.attention_step_forward(*_step_inputs(rng))
    nn.attention_step_backward(context, alpha, cache)
    with pytest.raises(RuntimeError, match="already used"):
        nn.attention_step_backward(context, alpha, cache)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.ones((N, L + 1), dtype=bool), r"mask must be a boolean array of shape \(N, L\) = \(3, 6\)"),
        (np.ones((N, L)), "mask must be a boolean array"),
        (np.eye(N, L, dtype=bool) & False, r"no location to attend to in rows \[0, 1, 2\]"),
    ],
)
def test_bad_mask_is_refused(mask, message, rng):
    with pytest.raises(ValueError, match=message):
        nn.attention_step_forward(*_step_inputs(rng), mask=mask)
    with pytest.raises(ValueError, match=message):
        nn.attention_lstm_forward(*_decoder_inputs(rng), mask=mask)


def test_bad_input_weights_are_refused(rng):
    inputs = _decoder_inputs(rng)
    inputs[5] = inputs[5][:W]  # Wx without the context rows
    with pytest.raises(ValueError, match=r"Wx must have shape \(W \+ D, 4H\) = \(12, 36\)"):
        nn.attention_lstm_forward(*inputs)
