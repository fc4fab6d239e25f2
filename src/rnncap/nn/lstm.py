"""Long short-term memory, CS231n's gate order: input i, forget f, output o, candidate g.

``a = x_t Wx + h_{t-1} Wh + b`` split in four blocks of width H;
``i, f, o = sigmoid(a_i, a_f, a_o)``, ``g = tanh(a_g)``, ``c_t = f * c_{t-1} + i * g``, ``h_t = o * tanh(c_t)``.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module
from rnncap.nn.activations import sigmoid_
from rnncap.nn.recurrent import (
    Cell,
    CoreCache,
    SequenceCache,
    SequenceGrads,
    StepCache,
    StepGrads,
    sequence_backward,
    sequence_forward,
    step_backward,
    step_forward,
)

# The two core functions are named, not private, because the attention decoder (rnncap.nn.attention_lstm) runs
# them too; their return types are narrower than the Cell protocol's: the LSTM always has a cell state.


def lstm_core_forward(
    a: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray | None, Wh: np.ndarray, out_h: np.ndarray
) -> tuple[np.ndarray, CoreCache]:
    """The LSTM's :class:`~rnncap.nn.recurrent.CoreForward`: a (N, 4H) -> gate activations i, f, o, g in place."""
    assert prev_c is not None, "the LSTM core needs a cell state"  # the recurrence always passes one
    xp = array_module(a)
    H = prev_h.shape[1]
    a += prev_h @ Wh  # (N, 4H)
    sigmoid_(a[:, : 3 * H])  # i, f, o
    xp.tanh(a[:, 3 * H :], out=a[:, 3 * H :])  # g
    i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
    next_c = f * prev_c
    next_c += i * g
    tanh_c = xp.tanh(next_c)
    xp.multiply(o, tanh_c, out=out_h)
    return next_c, (a, prev_c, tanh_c, Wh)


def lstm_core_backward(
    dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: CoreCache, da: np.ndarray, dah: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The LSTM's :class:`~rnncap.nn.recurrent.CoreBackward`; ``dah`` is ``da`` (both parts share the gradient)."""
    assert dnext_c is not None, "the LSTM core needs a cell-state gradient"  # the recurrence always passes one
    gates, prev_c, tanh_c, Wh = cache
    xp = array_module(da)
    H = prev_c.shape[1]
    i, f, o, g = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    di, df, do, dg = da[:, :H], da[:, H : 2 * H], da[:, 2 * H : 3 * H], da[:, 3 * H :]

    dc = tanh_c * tanh_c  # (N, H): total gradient reaching c_t, through h_t and from step t + 1
    xp.subtract(1, dc, out=dc)
    dc *= o
    dc *= dnext_h
    dc += dnext_c

    sig = gates[:, : 3 * H]  # sigmoid' = s (1 - s), for i, f, o at once
    xp.subtract(1, sig, out=da[:, : 3 * H])
    da[:, : 3 * H] *= sig
    di *= dc
    di *= g
    df *= dc
    df *= prev_c
    do *= dnext_h
    do *= tanh_c
    xp.multiply(g, g, out=dg)
    xp.subtract(1, dg, out=dg)  # tanh' = 1 - g^2
    dg *= dc
    dg *= i

    dc *= f  # becomes dprev_c
    return da @ Wh.T, dc


LSTM = Cell(
    name="lstm",
    gates=4,
    has_cell_state=True,
    separate_hidden_grad=False,
    core_forward=lstm_core_forward,
    core_backward=lstm_core_backward,
)


def lstm_step_forward(
    x: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, StepCache]:
    """One step of the LSTM.

    Args:
        x: (N, D); prev_h: (N, H); prev_c: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).

    Returns:
        next_h: (N, H); next_c: (N, H); cache.
    """
    next_h, next_c, cache = step_forward(LSTM, x, prev_h, prev_c, Wx, Wh, b)
    assert next_c is not None  # the LSTM's core always returns a cell state
    return next_h, next_c, cache


def lstm_step_backward(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: StepCache) -> StepGrads:
    """Backward of :func:`lstm_step_forward`: returns dx (N, D), dprev_h, dprev_c (N, H), dWx, dWh, db."""
    return step_backward(LSTM, dnext_h, dnext_c, cache)


def lstm_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, active: np.ndarray | None = None
) -> tuple[np.ndarray, SequenceCache]:
    """The LSTM over a sequence, with initial cell state zero.

    Args:
        x: (N, T, D); h0: (N, H); Wx: (D, 4H); Wh: (H, 4H); b: (4H,).
        active: (T,) non-increasing counts of active rows per step (a batch sorted by length), or None.

    Returns:
        h: (N, T, H) (zero where a row is not active); cache.
    """
    return sequence_forward(LSTM, x, h0, Wx, Wh, b, active)


def lstm_backward(dh: np.ndarray, cache: SequenceCache) -> SequenceGrads:
    """Backward of :func:`lstm_forward`: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    return sequence_backward(LSTM, dh, cache)
