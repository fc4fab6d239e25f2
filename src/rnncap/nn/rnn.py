"""Vanilla (Elman) RNN with tanh: ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``."""

from __future__ import annotations

import numpy as np

from rnncap.nn.recurrent import Cell, sequence_backward, sequence_forward, step_backward, step_forward


def _core_forward(a, prev_h, prev_c, Wh, out_h):
    a += prev_h @ Wh  # (N, H)
    np.tanh(a, out=out_h)
    return None, (out_h, Wh)


def _core_backward(dnext_h, dnext_c, cache, da, dah):
    next_h, Wh = cache
    np.multiply(next_h, next_h, out=da)
    np.subtract(1, da, out=da)  # tanh' = 1 - h^2
    da *= dnext_h
    return da @ Wh.T, None


RNN = Cell("rnn", 1, False, False, _core_forward, _core_backward)


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One step of the vanilla RNN.

    Args:
        x: (N, D); prev_h: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).

    Returns:
        next_h: (N, H); cache.
    """
    next_h, _, cache = step_forward(RNN, x, prev_h, None, Wx, Wh, b)
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """Backward of :func:`rnn_step_forward`: returns dx (N, D), dprev_h (N, H), dWx, dWh, db."""
    dx, dprev_h, _, dWx, dWh, db = step_backward(RNN, dnext_h, None, cache)
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """The vanilla RNN over a sequence.

    Args:
        x: (N, T, D); h0: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).

    Returns:
        h: (N, T, H); cache.
    """
    return sequence_forward(RNN, x, h0, Wx, Wh, b)


def rnn_backward(dh, cache):
    """Backward of :func:`rnn_forward`: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    return sequence_backward(RNN, dh, cache)
