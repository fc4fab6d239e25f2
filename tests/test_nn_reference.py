"""The fast layers equal the plain reference ones (rnncap.nn.reference) in float64: forward outputs and every
gradient, for every cell's step and whole sequence (the reference step run in a Python loop over time), the attention
step, the gate and the attention decoder. The fast layers run on each device, the reference on the host: the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import on
from rnncap import nn
from rnncap.backend import to_device, to_numpy
from rnncap.nn import reference as ref

N, T, D, H, W, L, A = 3, 5, 4, 6, 5, 7, 8
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
FAST_STEPS = {
    "rnn": (nn.rnn_step_forward, nn.rnn_step_backward),
    "lstm": (nn.lstm_step_forward, nn.lstm_step_backward),
    "gru": (nn.gru_step_forward, nn.gru_step_backward),
}
REFERENCE_STEPS = {
    "rnn": (ref.rnn_step_forward, ref.rnn_step_backward),
    "lstm": (ref.lstm_step_forward, ref.lstm_step_backward),
    "gru": (ref.gru_step_forward, ref.gru_step_backward),
}
FAST_SEQUENCES = {
    "rnn": (nn.rnn_forward, nn.rnn_backward),
    "lstm": (nn.lstm_forward, nn.lstm_backward),
    "gru": (nn.gru_forward, nn.gru_backward),
}
DECODER_INPUTS = ("x", "features", "feat_proj", "h0", "c0", "Wx", "Wh", "b", "W_h_att", "w_att", "W_beta", "b_beta")


def assert_equal_to_reference(fast, reference):
    """Equal up to float64 rounding: the two differ only in the order of the operations."""
    assert len(fast) == len(reference)
    for i, (ours, theirs) in enumerate(zip(fast, reference, strict=True)):
        np.testing.assert_allclose(to_numpy(ours), theirs, rtol=1e-10, atol=1e-12, err_msg=f"output {i}")


def compare_layers(fast, reference, inputs, rng, device):
    """Run both forward passes on ``inputs`` (the fast one on ``device``) and both backward passes on the same
    random upstream gradients."""
    *fast_outputs, fast_cache = fast[0](*on(device, inputs))
    *reference_outputs, reference_cache = reference[0](*inputs)
    assert_equal_to_reference(fast_outputs, reference_outputs)
    douts = [rng.standard_normal(out.shape) for out in reference_outputs]
    assert_equal_to_reference(fast[1](*on(device, douts), fast_cache), reference[1](*douts, reference_cache))


def random_arrays(rng, shapes, scale=1.0):
    return [rng.standard_normal(shape) * scale for shape in shapes]


def cell_weights(rng, cell, input_dim):
    """Wx, Wh, b; scaled so that no gate saturates."""
    k = GATES[cell]
    return random_arrays(rng, [(input_dim, k * H), (H, k * H), (k * H,)], scale=0.5)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_step_equals_reference(cell, rng, device):
    state = [rng.standard_normal((N, H)) for _ in range(2 if cell == "lstm" else 1)]  # prev_h (, prev_c)
    inputs = [rng.standard_normal((N, D)), *state, *cell_weights(rng, cell, D)]
    compare_layers(FAST_STEPS[cell], REFERENCE_STEPS[cell], inputs, rng, device)


def reference_sequence(cell, x, h0, Wx, Wh, b, dh):
    """The reference step over time (the LSTM from c0 = 0), then backpropagation through time with its backward.

    Returns h (N, T, H) and the gradients dx, dh0, dWx, dWh, db.
    """
    step_forward, step_backward = REFERENCE_STEPS[cell]
    state = [h0, np.zeros_like(h0)] if cell == "lstm" else [h0]  # [h] or [h, c]
    hs, caches = [], []
    for t in range(x.shape[1]):
        *state, cache = step_forward(x[:, t], *state, Wx, Wh, b)
        hs.append(state[0])
        caches.append(cache)

    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros_like(b)
    dstate = [np.zeros_like(h0) for _ in state]  # gradients reaching the state from step t + 1
    for t in reversed(range(x.shape[1])):
        dstate[0] = dstate[0] + dh[:, t]  # and from the output at t
        dx[:, t], *dstate, dWx_t, dWh_t, db_t = step_backward(*dstate, caches[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return np.stack(hs, axis=1), (dx, dstate[0], dWx, dWh, db)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_sequence_equals_reference_steps_in_a_loop(cell, rng, device):
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    weights = cell_weights(rng, cell, D)
    dh = rng.standard_normal((N, T, H))
    forward, backward = FAST_SEQUENCES[cell]
    h, cache = forward(*on(device, [x, h0, *weights]))
    expected_h, expected_grads = reference_sequence(cell, x, h0, *weights, dh)
    np.testing.assert_allclose(to_numpy(h), expected_h, rtol=1e-10, atol=1e-12)
    assert_equal_to_reference(backward(to_device(dh, device), cache), expected_grads)


def attention_mask():
    """Rows with all 7, 4 and 1 locations."""
    mask = np.ones((N, L), dtype=bool)
    mask[1, 4:] = False
    mask[2, 1:] = False
    return mask


@pytest.mark.parametrize("masked", [False, True])
def test_attention_step_equals_reference(masked, rng, device):
    mask = attention_mask() if masked else None
    device_mask = None if mask is None else to_device(mask, device)
    features_and_state = random_arrays(rng, [(N, L, D), (N, L, A), (N, H)])  # features, feat_proj, prev_h
    inputs = features_and_state + random_arrays(rng, [(H, A), (A,)], scale=0.5)  # W_h_att, w_att
    fast_forward = lambda *inputs: nn.attention_step_forward(*inputs, mask=device_mask)  # noqa: E731
    reference_forward = lambda *inputs: ref.attention_step_forward(*inputs, mask=mask)  # noqa: E731
    compare_layers(
        (fast_forward, nn.attention_step_backward),
        (reference_forward, ref.attention_step_backward),
        inputs,
        rng,
        device,
    )


def test_attention_gate_equals_reference(rng, device):
    inputs = random_arrays(rng, [(N, D), (N, H), (H, 1), (1,)])  # context, prev_h, W_beta, b_beta
    compare_layers(
        (nn.attention_gate_forward, nn.attention_gate_backward),
        (ref.attention_gate_forward, ref.attention_gate_backward),
        inputs,
        rng,
        device,
    )


def reference_decoder(inputs, mask, dh, dalpha):
    """attention step, gate and LSTM step (the reference ones) over time on ``[x_t; beta * context]``, then back.

    Returns h (N, T, H), alpha (N, T, L) and the gradients by name, as :class:`rnncap.nn.AttentionLSTMGrads`.
    """
    x, features, feat_proj, h0, c0, Wx, Wh, b, W_h_att, w_att, W_beta, b_beta = inputs
    h, c, hs, alphas, caches = h0, c0, [], [], []
    for t in range(x.shape[1]):
        context, alpha, attention_cache = ref.attention_step_forward(features, feat_proj, h, W_h_att, w_att, mask)
        gated, gate_cache = ref.attention_gate_forward(context, h, W_beta, b_beta)
        h, c, lstm_cache = ref.lstm_step_forward(np.concatenate([x[:, t], gated], axis=1), h, c, Wx, Wh, b)
        hs.append(h)
        alphas.append(alpha)
        caches.append((attention_cache, gate_cache, lstm_cache))

    grads = {"d" + name: np.zeros_like(value) for name, value in zip(DECODER_INPUTS, inputs, strict=True)}
    dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)  # gradients reaching the state from step t + 1
    for t in reversed(range(x.shape[1])):
        attention_cache, gate_cache, lstm_cache = caches[t]
        dinput, dh_lstm, dc_next, dWx, dWh, db = ref.lstm_step_backward(dh[:, t] + dh_next, dc_next, lstm_cache)
        grads["dx"][:, t] = dinput[:, : x.shape[2]]
        dcontext, dh_gate, dW_beta, db_beta = ref.attention_gate_backward(dinput[:, x.shape[2] :], gate_cache)
        dfeatures, dfeat_proj, dh_attention, dW_h_att, dw_att = ref.attention_step_backward(
            dcontext, dalpha[:, t], attention_cache
        )
        dh_next = dh_lstm + dh_gate + dh_attention
        summed_over_time = dict(dfeatures=dfeatures, dfeat_proj=dfeat_proj, dWx=dWx, dWh=dWh, db=db)
        summed_over_time.update(dW_h_att=dW_h_att, dw_att=dw_att, dW_beta=dW_beta, db_beta=db_beta)
        for name, grad in summed_over_time.items():
            grads[name] += grad
    grads["dh0"], grads["dc0"] = dh_next, dc_next
    return np.stack(hs, axis=1), np.stack(alphas, axis=1), grads


@pytest.mark.parametrize("masked", [False, True])
def test_attention_decoder_equals_reference_steps_in_a_loop(masked, rng, device):
    mask = attention_mask() if masked else None
    data = random_arrays(rng, [(N, T, W), (N, L, D), (N, L, A), (N, H), (N, H)])
    weights = random_arrays(rng, [(W + D, 4 * H), (H, 4 * H), (4 * H,), (H, A), (A,), (H, 1), (1,)], scale=0.3)
    inputs = data + weights  # named as DECODER_INPUTS
    dh, dalpha = rng.standard_normal((N, T, H)), rng.standard_normal((N, T, L))
    h, alpha, cache = nn.attention_lstm_forward(
        *on(device, inputs), mask=None if mask is None else to_device(mask, device)
    )
    expected_h, expected_alpha, expected_grads = reference_decoder(inputs, mask, dh, dalpha)
    np.testing.assert_allclose(to_numpy(h), expected_h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(to_numpy(alpha), expected_alpha, rtol=1e-10, atol=1e-12)
    grads = nn.attention_lstm_backward(*on(device, [dh, dalpha]), cache)
    for name, expected in expected_grads.items():
        np.testing.assert_allclose(to_numpy(getattr(grads, name)), expected, rtol=1e-10, atol=1e-12, err_msg=name)
