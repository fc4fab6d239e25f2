"""Plain reference versions of the recurrent cells and of one attention step: the test oracle of the fast layers.

Each function is the textbook formula written out: no in-place updates, no buffers, no blocking, nothing shared
between cells, so that it can be checked by eye against the equations. tests/test_nn_reference.py holds the fast
layers of :mod:`rnncap.nn` (every step, every whole sequence, the attention decoder) equal to these in float64. They
are slow and allocate freely: use them to read and to test, not to train.

The names, shapes, gate orders and return orders are the fast layers' (CS231n's): the LSTM's gates are i, f, o, g;
the GRU's are r, z, n in PyTorch's formulation, ``n = tanh(x Wx_n + b_n + r * (h Wh_n))``. A cache is whatever the
backward pass needs, as a tuple. These are deliberately not exported from :mod:`rnncap.nn`, so that nothing there
can use them by mistake: import them from here.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module

Cache = tuple[np.ndarray, ...]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` (overflows to 0 with a warning below about -709 in float64; tests stay far from it)."""
    xp = array_module(x)
    return 1 / (1 + xp.exp(-x))


# ------------------------------------------------------------------------------------------------ vanilla RNN


def rnn_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """``next_h = tanh(x Wx + prev_h Wh + b)``. x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,)."""
    xp = array_module(x)
    next_h = xp.tanh(x @ Wx + prev_h @ Wh + b)
    return next_h, (x, prev_h, Wx, Wh, next_h)


def rnn_step_backward(dnext_h: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """dx, dprev_h, dWx, dWh, db."""
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)  # through tanh
    return da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)


# ------------------------------------------------------------------------------------------------ LSTM


def lstm_step_forward(
    x: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Cache]:
    """``c = f * prev_c + i * g``, ``h = o * tanh(c)``. x (N, D), prev_h and prev_c (N, H), Wx (D, 4H), Wh (H, 4H)."""
    xp = array_module(x)
    a_i, a_f, a_o, a_g = xp.split(x @ Wx + prev_h @ Wh + b, 4, axis=1)
    i, f, o, g = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o), xp.tanh(a_g)
    next_c = f * prev_c + i * g
    next_h = o * xp.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h: np.ndarray, dnext_c: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """dx, dprev_h, dprev_c, dWx, dWh, db."""
    xp = array_module(dnext_h)
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tanh_c = xp.tanh(next_c)
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)  # from step t + 1 and through h
    di = dc * g * i * (1 - i)
    df = dc * prev_c * f * (1 - f)
    do = dnext_h * tanh_c * o * (1 - o)
    dg = dc * i * (1 - g**2)
    da = xp.concatenate([di, df, do, dg], axis=1)  # (N, 4H)
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


# ------------------------------------------------------------------------------------------------ GRU


def gru_step_forward(
    x: np.ndarray, prev_h: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """``next_h = (1 - z) * n + z * prev_h``. x (N, D), prev_h (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,)."""
    xp = array_module(x)
    x_r, x_z, x_n = xp.split(x @ Wx + b, 3, axis=1)
    h_r, h_z, h_n = xp.split(prev_h @ Wh, 3, axis=1)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = xp.tanh(x_n + r * h_n)
    next_h = (1 - z) * n + z * prev_h
    return next_h, (x, prev_h, Wx, Wh, h_n, r, z, n)


def gru_step_backward(dnext_h: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """dx, dprev_h, dWx, dWh, db."""
    xp = array_module(dnext_h)
    x, prev_h, Wx, Wh, h_n, r, z, n = cache
    dn = dnext_h * (1 - z) * (1 - n**2)  # of n's pre-activation
    dz = dnext_h * (prev_h - n) * z * (1 - z)
    dr = dn * h_n * r * (1 - r)
    dax = xp.concatenate([dr, dz, dn], axis=1)  # of x Wx + b
    dah = xp.concatenate([dr, dz, dn * r], axis=1)  # of prev_h Wh: r multiplies h Wh_n
    dprev_h = dah @ Wh.T + dnext_h * z
    return dax @ Wx.T, dprev_h, x.T @ dax, prev_h.T @ dah, dax.sum(axis=0)


# ------------------------------------------------------------------------------------------------ soft attention


def attention_step_forward(
    features: np.ndarray,
    feat_proj: np.ndarray,
    prev_h: np.ndarray,
    W_h_att: np.ndarray,
    w_att: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Cache]:
    """``e = tanh(feat_proj + prev_h W_h_att) w_att``, ``alpha = softmax(e)`` over the unmasked locations,
    ``context = sum_l alpha_l features_l``. features (N, L, D), feat_proj (N, L, A), W_h_att (H, A), w_att (A,)."""
    xp = array_module(features)
    s = xp.tanh(feat_proj + (prev_h @ W_h_att)[:, None, :])  # (N, L, A)
    e = s @ w_att  # (N, L)
    if mask is not None:
        e = xp.where(mask, e, -np.inf)
    alpha = xp.exp(e - e.max(axis=1, keepdims=True))
    alpha = alpha / alpha.sum(axis=1, keepdims=True)
    context = xp.einsum("nl,nld->nd", alpha, features)
    return context, alpha, (features, prev_h, W_h_att, w_att, s, alpha)


def attention_step_backward(dcontext: np.ndarray, dalpha: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """dfeatures, dfeat_proj, dprev_h, dW_h_att, dw_att."""
    xp = array_module(dcontext)
    features, prev_h, W_h_att, w_att, s, alpha = cache
    dalpha = dalpha + xp.einsum("nld,nd->nl", features, dcontext)  # also through the context
    de = alpha * (dalpha - (alpha * dalpha).sum(axis=1, keepdims=True))  # through the softmax
    dpre = de[:, :, None] * w_att * (1 - s**2)  # (N, L, A), of feat_proj + prev_h W_h_att
    dhA = dpre.sum(axis=1)  # (N, A)
    dfeatures = alpha[:, :, None] * dcontext[:, None, :]
    return dfeatures, dpre, dhA @ W_h_att.T, prev_h.T @ dhA, xp.einsum("nl,nla->a", de, s)


def attention_gate_forward(
    context: np.ndarray, prev_h: np.ndarray, W_beta: np.ndarray, b_beta: np.ndarray
) -> tuple[np.ndarray, Cache]:
    """``gated = sigmoid(prev_h W_beta + b_beta) * context``. context (N, D), prev_h (N, H), W_beta (H, 1)."""
    beta = sigmoid(prev_h @ W_beta + b_beta)  # (N, 1)
    return beta * context, (context, prev_h, W_beta, beta)


def attention_gate_backward(dgated: np.ndarray, cache: Cache) -> tuple[np.ndarray, ...]:
    """dcontext, dprev_h, dW_beta, db_beta."""
    context, prev_h, W_beta, beta = cache
    dbeta_pre = (dgated * context).sum(axis=1, keepdims=True) * beta * (1 - beta)  # (N, 1)
    return dgated * beta, dbeta_pre @ W_beta.T, prev_h.T @ dbeta_pre, dbeta_pre.sum(axis=0)
