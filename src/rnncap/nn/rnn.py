"""Vanilla (Elman) RNN with tanh: ``h_t = tanh(x_t Wx + h_{t-1} Wh + b)``."""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module
from rnncap.nn.recurrent import (
    Cell,
    CoreCache,
    HiddenStepGrads,
    SequenceCache,
    SequenceGrads,
    StepCache,
    sequence_backward,
    sequence_forward,
    step_backward,
    step_forward,
)


def _core_forward(
    a: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray | None, Wh: np.ndarray, out_h: np.ndarray
) -> tuple[None, CoreCache]:
    a += prev_h @ Wh  # (N, H)
    array_module(a).tanh(a, out=out_h)
    return None, (out_h, Wh)


def _core_backward(
    dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: CoreCache, da: np.ndarray, dah: np.ndarray
) -> tuple[np.ndarray, None]:
    next_h, Wh = cache
    xp = array_module(da)
    xp.multiply(next_h, next_h, out=da)
    xp.subtract(1, da, out=da)  # tanh' = 1 - h^2
    da *= dnext_h
    return da @ Wh.T, None


RNN = Cell(
    name="rnn",
    gates=1,
    has_cell_state=False,
    separate_hidden_grad=False,
    core_forward=_core_forward,
    core_backward=_core_backward,
)


def rnn_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, StepCache]:
    """One step of the vanilla RNN.

    Args:
        x: (N, D); prev_h: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).

    Returns:
        next_h: (N, H); cache.
    """
    next_h, _, cache = step_forward(RNN, x, prev_h, None, Wx, Wh, b)
    return next_h, cache


def rnn_step_backward(dnext_h: np.ndarray, cache: StepCache) -> HiddenStepGrads:
    """Backward of :func:`rnn_step_forward`: returns dx (N, D), dprev_h (N, H), dWx, dWh, db."""
    dx, dprev_h, _, dWx, dWh, db = step_backward(RNN, dnext_h, None, cache)
    return HiddenStepGrads(dx, dprev_h, dWx, dWh, db)


def rnn_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, active: np.ndarray | None = None
) -> tuple[np.ndarray, SequenceCache]:
    """The vanilla RNN over a sequence.

    Args:
        x: (N, T, D); h0: (N, H); Wx: (D, H); Wh: (H, H); b: (H,).
        active: (T,) non-increasing counts of active rows per step (a batch sorted by length), or None.

    Returns:
        h: (N, T, H) (zero where a row is not active); cache.
    """
    return sequence_forward(RNN, x, h0, Wx, Wh, b, active)


def rnn_backward(dh: np.ndarray, cache: SequenceCache) -> SequenceGrads:
    """Backward of :func:`rnn_forward`: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    return sequence_backward(RNN, dh, cache)
