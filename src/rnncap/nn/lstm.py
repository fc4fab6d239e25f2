"""Long short-term memory, CS231n's gate order: input i, forget f, output o, candidate g.

``a = x_t Wx + h_{t-1} Wh + b`` split in four blocks of width H;
``i, f, o = sigmoid(a_i, a_f, a_o)``, ``g = tanh(a_g)``, ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.
"""

from __future__ import annotations

import numpy as np

from rnncap.nn.activations import sigmoid_
from rnncap.nn.recurrent import Cell, sequence_backward, sequence_forward, step_backward, step_forward


def _core_forward(a, prev_h, prev_c, Wh, out_h):
    H = prev_h.shape[1]
    a += prev_h @ Wh  # (N, 4H)
    sigmoid_(a[:, : 3 * H])  # i, f, o
    np.tanh(a[:, 3 * H :], out=a[:, 3 * H :])  # g
    i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    next_c = f * prev_c
    next_c += i * g
    tanh_c = np.tanh(next_c)
    np.multiply(o, tanh_c, out=out_h)
    return next_c, (a, prev_c, tanh_c, Wh)


def _core_backward(dnext_h, dnext_c, cache, da, dah):
    gates, prev_c, tanh_c, Wh = cache
    H = prev_c.shape[1]
    i, f, o, g = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    di, df, do, dg = da[:, :H], da[:, H : 2 * H], da[:, 2 * H : 3 * H], da[:, 3 * H :]

    dc = tanh_c * tanh_c  # (N, H): total gradient reaching c_t, through h_t and from step t + 1
    np.subtract(1, dc, out=dc)
    dc *= o
    dc *= dnext_h
    dc += dnext_c

    sig = gates[:, : 3 * H]  # sigmoid' = s (1 - s), for i, f, o at once
    np.subtract(1, sig, out=da[:, : 3 * H])
    da[:, : 3 * H] *= sig
    di *= dc
    di *= g
    df *= dc
    df *= prev_c
    do *= dnext_h
    do *= tanh_c
    np.multiply(g, g, out=dg)
    np.subtract(1, dg, out=dg)  # tanh' = 1 - g^2
    dg *= dc
    dg *= i

    dc *= f  # becomes dprev_c
    return da @ Wh.T, dc


LSTM = Cell("lstm", 4, True, False, _core_forward, _core_backward)


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One step of the LSTM.

    Args:
        x: (N, D); prev_h: (N, H); prev_c: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).

    Returns:
        next_h: (N, H); next_c: (N, H); cache.
    """
    return step_forward(LSTM, x, prev_h, prev_c, Wx, Wh, b)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward of :func:`lstm_step_forward`: returns dx, dprev_h, dprev_c, dWx, dWh, db."""
    return step_backward(LSTM, dnext_h, dnext_c, cache)


def lstm_forward(x, h0, Wx, Wh, b):
    """The LSTM over a sequence, with initial cell state zero.

    Args:
        x: (N, T, D); h0: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).

    Returns:
        h: (N, T, H); cache.
    """
    return sequence_forward(LSTM, x, h0, Wx, Wh, b)


def lstm_backward(dh, cache):
    """Backward of :func:`lstm_forward`: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    return sequence_backward(LSTM, dh, cache)
