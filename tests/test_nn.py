"""Every layer's backward against numeric gradients (float64), plus numerics and dtype behaviour."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest

from helpers import on
from rnncap import nn
from rnncap.backend import to_device, to_numpy
from rnncap.gradcheck import check_layer, numerical_gradient, rel_error

LAYER_TOLERANCE = 1e-7  # the bound for layers; CS231n's notebooks accept about the same
N, T, D, H, V = 3, 5, 4, 6, 7

SEQUENCES = {
    "rnn": (nn.rnn_forward, nn.rnn_backward, 1),
    "lstm": (nn.lstm_forward, nn.lstm_backward, 4),
    "gru": (nn.gru_forward, nn.gru_backward, 3),
}


def _recurrent_inputs(rng, k, with_cell_state=False):
    x = rng.standard_normal((N, D))
    h = rng.standard_normal((N, H))
    c = [rng.standard_normal((N, H))] if with_cell_state else []
    return [
        x,
        h,
        *c,
        rng.standard_normal((D, k * H)) * 0.5,
        rng.standard_normal((H, k * H)) * 0.5,
        rng.standard_normal(k * H),
    ]


def _assert_all_close(errors):
    checked = [e for e in errors if e is not None]
    assert checked and max(checked) < LAYER_TOLERANCE, errors


@pytest.mark.parametrize("cell", sorted(SEQUENCES))
def test_sequence_gradients(cell, rng, device):
    forward, backward, k = SEQUENCES[cell]
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    inputs = [
        x,
        h0,
        rng.standard_normal((D, k * H)) * 0.5,
        rng.standard_normal((H, k * H)) * 0.5,
        rng.standard_normal(k * H),
    ]
    _assert_all_close(check_layer(forward, backward, on(device, inputs), rng=1))


def test_rnn_step_gradients(rng, device):
    inputs = on(device, _recurrent_inputs(rng, 1))
    _assert_all_close(check_layer(nn.rnn_step_forward, nn.rnn_step_backward, inputs))


def test_gru_step_gradients(rng, device):
    inputs = on(device, _recurrent_inputs(rng, 3))
    _assert_all_close(check_layer(nn.gru_step_forward, nn.gru_step_backward, inputs))


def test_lstm_step_gradients(rng, device):
    inputs = on(device, _recurrent_inputs(rng, 4, with_cell_state=True))
    _assert_all_close(check_layer(nn.lstm_step_forward, nn.lstm_step_backward, inputs))


def test_affine_gradients(rng, device):
    inputs = on(device, [rng.standard_normal((N, D)), rng.standard_normal((D, H)), rng.standard_normal(H)])
    _assert_all_close(check_layer(nn.affine_forward, nn.affine_backward, inputs))


def test_temporal_affine_gradients(rng, device):
    inputs = on(device, [rng.standard_normal((N, T, D)), rng.standard_normal((D, H)), rng.standard_normal(H)])
    _assert_all_close(check_layer(nn.temporal_affine_forward, nn.temporal_affine_backward, inputs))


def test_word_embedding_gradients(rng, device):
    inputs = on(device, [rng.integers(0, V, size=(N, T)), rng.standard_normal((V, D))])
    errors = check_layer(nn.word_embedding_forward, nn.word_embedding_backward, inputs)
    assert errors[0] is None  # token ids get no gradient
    _assert_all_close(errors)


def test_word_embedding_backward_matches_add_at(rng, device):
    ids = rng.integers(0, 50, size=(16, 9))
    dout = rng.standard_normal((16, 9, 5)).astype(np.float32)
    device_ids, device_dout, W = on(device, [ids, dout, np.zeros((50, 5), dtype=np.float32)])
    _, cache = nn.word_embedding_forward(device_ids, W)
    expected = np.zeros((50, 5), dtype=np.float32)
    np.add.at(expected, ids.ravel(), dout.reshape(-1, 5))
    dW = nn.word_embedding_backward(device_dout, cache)
    assert dW.dtype == np.float32
    np.testing.assert_allclose(to_numpy(dW), expected, rtol=1e-5, atol=1e-6)


def test_temporal_softmax_loss_gradient(rng, device):
    x, y, mask = on(device, [rng.standard_normal((N, T, V)), rng.integers(0, V, size=(N, T)), rng.random((N, T)) > 0.3])
    _, dx = nn.temporal_softmax_loss(x, y, mask)
    assert rel_error(dx, numerical_gradient(lambda: nn.temporal_softmax_loss(x, y, mask)[0], x)) < LAYER_TOLERANCE


def test_temporal_softmax_loss_values():
    """CS231n's sanity checks: uniform scores give log(V) per counted step; the mask removes steps."""
    n, t, v = 100, 1, 10
    y = np.zeros((n, t), dtype=int)
    x = np.zeros((n, t, v))
    assert nn.temporal_softmax_loss(x, y, np.ones((n, t), dtype=bool))[0] == pytest.approx(np.log(v))
    n, t = 100, 10
    x, y = np.zeros((n, t, v)), np.zeros((n, t), dtype=int)
    assert nn.temporal_softmax_loss(x, y, np.ones((n, t), dtype=bool))[0] == pytest.approx(t * np.log(v))
    mask = np.zeros((n, t), dtype=bool)
    mask[:, :3] = True
    assert nn.temporal_softmax_loss(x, y, mask)[0] == pytest.approx(3 * np.log(v))


def test_temporal_softmax_loss_is_stable_for_huge_scores():
    x = np.array([[[1e4, 0.0, -1e4]], [[-1e30, 1e30, 0.0]]], dtype=np.float32)  # (2, 1, 3)
    y = np.array([[0], [0]])
    loss, dx = nn.temporal_softmax_loss(x, y, np.ones((2, 1), dtype=bool))
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert loss == pytest.approx(2e30 / 2, rel=1e-6)  # the second target sits 2e30 below the best score


def test_log_softmax_rows_normalise(rng):
    scores = rng.standard_normal((4, 9)) * 50
    log_probs = nn.log_softmax(scores)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=1), 1.0)


@pytest.mark.parametrize("cell", sorted(SEQUENCES))
def test_float32_stays_float32(cell, rng, device):
    """float32 in, float32 everywhere: no silent upcast in forward or backward."""
    forward, backward, k = SEQUENCES[cell]
    f32 = np.float32
    x = rng.standard_normal((N, T, D)).astype(f32)
    h0 = rng.standard_normal((N, H)).astype(f32)
    weights = [rng.standard_normal(s).astype(f32) for s in ((D, k * H), (H, k * H), (k * H,))]
    h, cache = forward(*on(device, [x, h0, *weights]))
    assert h.dtype == f32
    assert all(g.dtype == f32 for g in backward(to_device(np.ones(h.shape, f32), device), cache))


@pytest.mark.parametrize("cell", sorted(SEQUENCES))
def test_sequence_equals_repeated_steps(cell, rng, device):
    """The sequence function and the step function compute the same thing."""
    forward, _, k = SEQUENCES[cell]
    step = {"rnn": nn.rnn_step_forward, "lstm": nn.lstm_step_forward, "gru": nn.gru_step_forward}[cell]
    x = rng.standard_normal((N, T, D))
    h0 = rng.standard_normal((N, H))
    Wx, Wh, b = rng.standard_normal((D, k * H)), rng.standard_normal((H, k * H)), rng.standard_normal(k * H)
    x, h0, Wx, Wh, b, c = on(device, [x, h0, Wx, Wh, b, np.zeros((N, H))])
    h_seq, _ = forward(x, h0, Wx, Wh, b)
    h = h0
    for t in range(T):
        if cell == "lstm":
            h, c, _ = step(x[:, t], h, c, Wx, Wh, b)
        else:
            h, _ = step(x[:, t], h, Wx, Wh, b)
        np.testing.assert_allclose(to_numpy(h_seq[:, t]), to_numpy(h), rtol=1e-12, atol=1e-12)


def test_lstm_known_values():
    """CS231n's published LSTM step check (assignment 3, LSTM_Captioning notebook)."""
    n, d, h = 3, 4, 5
    x = np.linspace(-0.4, 1.2, num=n * d).reshape(n, d)
    prev_h = np.linspace(-0.3, 0.7, num=n * h).reshape(n, h)
    prev_c = np.linspace(-0.4, 0.9, num=n * h).reshape(n, h)
    Wx = np.linspace(-2.1, 1.3, num=4 * d * h).reshape(d, 4 * h)
    Wh = np.linspace(-0.7, 2.2, num=4 * h * h).reshape(h, 4 * h)
    b = np.linspace(0.3, 0.7, num=4 * h)
    next_h, next_c, _ = nn.lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)
    expected_next_h = np.asarray(
        [
            [0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
            [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
            [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299],
        ]
    )
    expected_next_c = np.asarray(
        [
            [0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
            [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
            [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676],
        ]
    )
    assert rel_error(next_h, expected_next_h) < 1e-7
    assert rel_error(next_c, expected_next_c) < 1e-7


def test_rnn_step_known_values():
    """CS231n's published vanilla RNN step check."""
    n, d, h = 3, 10, 4
    x = np.linspace(-0.4, 0.7, num=n * d).reshape(n, d)
    prev_h = np.linspace(-0.2, 0.5, num=n * h).reshape(n, h)
    Wx = np.linspace(-0.1, 0.9, num=d * h).reshape(d, h)
    Wh = np.linspace(-0.3, 0.7, num=h * h).reshape(h, h)
    b = np.linspace(-0.2, 0.4, num=h)
    next_h, _ = nn.rnn_step_forward(x, prev_h, Wx, Wh, b)
    expected = np.asarray(
        [
            [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
            [0.66854692, 0.79562378, 0.87755553, 0.92795967],
            [0.97934501, 0.99144213, 0.99646691, 0.99854353],
        ]
    )
    assert rel_error(next_h, expected) < 1e-7


def test_sigmoid_is_stable_and_exact():
    x = np.array([-1e4, -30.0, -1.0, 0.0, 2.0, 1e4])
    expected = 1 / (1 + np.exp(-np.clip(x, -700, 700)))
    np.testing.assert_allclose(nn.activations.sigmoid_(x.copy()), expected, rtol=1e-15, atol=1e-16)


def test_dropout_gradient_and_statistics(rng, device):
    x = to_device(rng.standard_normal((4, 5, 6)), device)
    forward = lambda x: nn.dropout_forward(x, 0.3, np.random.default_rng(7))  # noqa: E731 (same mask every call)
    _assert_all_close(check_layer(forward, nn.dropout_backward, [x]))
    big = to_device(np.ones((200, 500), dtype=np.float32), device)
    out, _ = nn.dropout_forward(big, 0.25, rng)
    assert out.dtype == np.float32
    out = to_numpy(out)
    assert abs((out == 0).mean() - 0.25) < 0.01  # about a quarter dropped
    assert abs(out.mean() - 1.0) < 0.02  # the survivors' scale keeps the expectation
    same, cache = nn.dropout_forward(big, 0.0, rng)
    assert same is big and cache is None
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
        nn.dropout_forward(big, 1.0, rng)


@pytest.mark.parametrize(
    ("forward", "backward"),
    [
        (nn.step_forward, nn.step_backward),
        (nn.sequence_forward, nn.sequence_backward),
        *((getattr(nn, f"{c}_step_forward"), getattr(nn, f"{c}_step_backward")) for c in ("rnn", "lstm", "gru")),
        *((getattr(nn, f"{c}_forward"), getattr(nn, f"{c}_backward")) for c in ("rnn", "lstm", "gru")),
        (nn.attention_step_forward, nn.attention_step_backward),
        (nn.attention_lstm_forward, nn.attention_lstm_backward),
    ],
    ids=lambda f: f.__name__,
)
def test_gradients_are_named_after_the_forward_inputs(forward, backward):
    """A backward's named tuple holds ``d<input>`` for every array input of its forward, in the same order."""
    arrays = [name for name in inspect.signature(forward).parameters if name not in ("cell", "mask", "active")]
    assert typing.get_type_hints(backward)["return"]._fields == tuple(f"d{name}" for name in arrays)


def test_gradients_unpack_like_tuples_and_read_by_name(rng):
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    h, cache = nn.lstm_forward(x, h0, *(rng.standard_normal(s) for s in ((D, 4 * H), (H, 4 * H), (4 * H,))))
    grads = nn.lstm_backward(np.ones_like(h), cache)
    dx, dh0, dWx, dWh, db = grads  # CS231n's usage
    assert dWx is grads.dWx and dh0 is grads.dh0 and dx.shape == x.shape and db.shape == (4 * H,)
