"""Gated recurrent unit, in PyTorch's formulation and gate order (reset r, update z, new n):

``r = sigmoid(x Wx_r + h Wh_r + b_r)``, ``z = sigmoid(x Wx_z + h Wh_z + b_z)``,
``n = tanh(x Wx_n + b_n + r * (h Wh_n))``, ``h_t = (1 - z) * n + z * h_{t-1}``.

The reset gate multiplies the hidden projection *after* the product (Cho et al. 2014 as in cuDNN and
``torch.nn.GRU`` with ``bias_hh`` zero), so the hidden part of the gradient differs from the input part.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module
from rnncap.nn.activations import sigmoid_
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
    xp = array_module(a)
    H = prev_h.shape[1]
    ah = prev_h @ Wh  # (N, 3H)
    a[:, : 2 * H] += ah[:, : 2 * H]
    sigmoid_(a[:, : 2 * H])  # r, z
    r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
    hn = ah[:, 2 * H :]  # h Wh_n, kept for the gradient of r
    n += r * hn
    xp.tanh(n, out=n)
    xp.subtract(prev_h, n, out=out_h)
    out_h *= z
    out_h += n
    return None, (a, prev_h, hn, Wh)


def _core_backward(
    dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: CoreCache, da: np.ndarray, dah: np.ndarray
) -> tuple[np.ndarray, None]:
    gates, prev_h, hn, Wh = cache
    xp = array_module(da)
    H = prev_h.shape[1]
    r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
    dr, dz, dn = da[:, :H], da[:, H : 2 * H], da[:, 2 * H :]

    xp.multiply(n, n, out=dn)
    xp.subtract(1, dn, out=dn)  # tanh' = 1 - n^2
    dn *= 1 - z
    dn *= dnext_h  # gradient of n's pre-activation
    xp.multiply(dn, r, out=dah[:, 2 * H :])
    xp.multiply(dn, hn, out=dr)
    dr *= r
    dr *= 1 - r
    xp.subtract(prev_h, n, out=dz)
    dz *= dnext_h
    dz *= z
    dz *= 1 - z
    dah[:, : 2 * H] = da[:, : 2 * H]

    dprev_h = dah @ Wh.T
    dprev_h += dnext_h * z
    return dprev_h, None


GRU = Cell(
    name="gru",
    gates=3,
    has_cell_state=False,
    separate_hidden_grad=True,
    core_forward=_core_forward,
    core_backward=_core_backward,
)


def gru_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, StepCache]:
    """One step of the GRU.

    Args:
        x: (N, D); prev_h: (N, H); Wx: (D, 3H); Wh: (H, 3H); b: (3H,).

    Returns:
        next_h: (N, H); cache.
    """
    next_h, _, cache = step_forward(GRU, x, prev_h, None, Wx, Wh, b)
    return next_h, cache


def gru_step_backward(dnext_h: np.ndarray, cache: StepCache) -> HiddenStepGrads:
    """Backward of :func:`gru_step_forward`: returns dx (N, D), dprev_h (N, H), dWx, dWh, db."""
    dx, dprev_h, _, dWx, dWh, db = step_backward(GRU, dnext_h, None, cache)
    return HiddenStepGrads(dx, dprev_h, dWx, dWh, db)


def gru_forward(
    x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, active: np.ndarray | None = None
) -> tuple[np.ndarray, SequenceCache]:
    """The GRU over a sequence.

    Args:
        x: (N, T, D); h0: (N, H); Wx: (D, 3H); Wh: (H, 3H); b: (3H,).
        active: (T,) non-increasing counts of active rows per step (a batch sorted by length), or None.

    Returns:
        h: (N, T, H) (zero where a row is not active); cache.
    """
    return sequence_forward(GRU, x, h0, Wx, Wh, b, active)


def gru_backward(dh: np.ndarray, cache: SequenceCache) -> SequenceGrads:
    """Backward of :func:`gru_forward`: dh (N, T, H) -> dx (N, T, D), dh0 (N, H), dWx, dWh, db."""
    return sequence_backward(GRU, dh, cache)
