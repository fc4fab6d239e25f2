"""The decoder of "Show, Attend and Tell": an LSTM that, at every step, attends over the grid with ``h_{t-1}`` and
reads ``[x_t; beta * context]``.

It runs the kernels of :mod:`rnncap.nn.attention` and the LSTM core of :mod:`rnncap.nn.lstm` in one time loop, the
way :func:`rnncap.nn.sequence_forward` runs a plain cell: the word part of every step's gates is one matrix product
before the loop, the sequence runs time-major, and weight gradients are one matrix product each after the backward
loop. Step by step it equals ``attention_step_forward`` + ``attention_gate_forward`` + ``lstm_step_forward``
(tests/test_attention.py and tests/test_nn_reference.py hold it to that).

Names and shapes: N batch, T time, L grid locations, D feature channels, A attention width, H hidden, W word vector.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import numpy as np

from rnncap.backend import array_module
from rnncap.nn.attention import attend, attend_backward, check_mask, gate_context, gate_context_backward, take_scratch
from rnncap.nn.lstm import lstm_core_backward, lstm_core_forward
from rnncap.nn.packed import check_active
from rnncap.nn.recurrent import CoreCache


class AttentionLSTMCache(NamedTuple):
    """What :func:`attention_lstm_forward` keeps for :func:`attention_lstm_backward`; per-step arrays time-major."""

    x_flat: np.ndarray  # (T*N, W) the word vectors
    features: np.ndarray  # (N, L, D)
    Wx: np.ndarray  # (W + D, 4H)
    W_hb: np.ndarray  # (H, A + 1) [W_h_att | W_beta]
    w_att: np.ndarray  # (A,)
    hs: np.ndarray  # (T + 1, N, H): hs[t] is h_{t-1} for step t
    scratch: list[np.ndarray | None]  # [s]: s (T, N, 1, L, A) the tanh activations, the backward pass's scratch
    alphas: np.ndarray  # (T, N, L)
    contexts: np.ndarray  # (T, N, D)
    gated: np.ndarray  # (T, N, D) beta * context
    betas: np.ndarray  # (T, N, 1)
    lstm_caches: list[CoreCache]  # T of them
    counts: np.ndarray  # (T,) active rows per step (N at every step unless packed)


class AttentionLSTMGrads(NamedTuple):
    """Gradients of :func:`attention_lstm_backward`, in the order of :func:`attention_lstm_forward`'s inputs."""

    dx: np.ndarray  # (N, T, W)
    dfeatures: np.ndarray | None  # (N, L, D); None when asked not to compute it (a frozen encoder)
    dfeat_proj: np.ndarray  # (N, L, A)
    dh0: np.ndarray  # (N, H)
    dc0: np.ndarray  # (N, H)
    dWx: np.ndarray  # (W + D, 4H)
    dWh: np.ndarray  # (H, 4H)
    db: np.ndarray  # (4H,)
    dW_h_att: np.ndarray  # (H, A)
    dw_att: np.ndarray  # (A,)
    dW_beta: np.ndarray  # (H, 1)
    db_beta: np.ndarray  # (1,)


def attention_lstm_forward(
    x: np.ndarray,
    features: np.ndarray,
    feat_proj: np.ndarray,
    h0: np.ndarray,
    c0: np.ndarray,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
    W_h_att: np.ndarray,
    w_att: np.ndarray,
    W_beta: np.ndarray,
    b_beta: np.ndarray,
    mask: np.ndarray | None = None,
    active: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, AttentionLSTMCache]:
    """The attention decoder over a sequence: at every step attend with ``h_{t-1}``, gate the context, and run the
    LSTM core on ``[x_t; beta * context]``. ``x`` may be a transposed view of a time-major array.

    Args:
        x: (N, T, W) word vectors. features: (N, L, D). feat_proj: (N, L, A) ``features @ W_feat + b_feat``.
        h0, c0: (N, H) initial states. Wx: (W + D, 4H) input weights, word rows first, then context rows.
        Wh: (H, 4H); b: (4H,) (gates i, f, o, g). W_h_att: (H, A); w_att: (A,); W_beta: (H, 1); b_beta: (1,).
        mask: (N, L) booleans, True where a location exists; None: every location.
        active: (T,) non-increasing counts: step t runs rows ``[:active[t]]`` only (a batch sorted by length,
            see :mod:`rnncap.nn.packed`); None: every row at every step.

    Returns:
        h: (N, T, H) hidden states; alpha: (N, T, L) attention weights (both transposed views of time-major
        arrays, zero where a row is not active); cache for :func:`attention_lstm_backward`.
    """
    N, T, W = x.shape
    _, L, D = features.shape
    H, A = h0.shape[1], w_att.shape[0]
    check_mask(mask, N, L)
    counts = np.full(T, N, dtype=np.int64) if active is None else check_active(active, N, T)
    if Wx.shape != (W + D, 4 * H):
        raise ValueError(f"Wx must have shape (W + D, 4H) = ({W + D}, {4 * H}), got {Wx.shape}")
    dtype = feat_proj.dtype
    Wx_word, Wx_ctx = Wx[:W], Wx[W:]  # views: the word rows and the context rows
    x_flat = x.transpose(1, 0, 2).reshape(T * N, W)
    a = (x_flat @ Wx_word).reshape(T, N, 4 * H)  # the word part of every step's gates, one GEMM
    a += b
    xp = array_module(x, features, h0)
    W_hb = xp.concatenate([W_h_att, W_beta], axis=1)  # (H, A + 1)

    # Zeros, not empty: a packed batch leaves the rows that are not active untouched, and the products and sums
    # after the backward loop read every row (np.zeros of a large array costs no more than np.empty).
    hs = xp.zeros((T + 1, N, H), dtype=dtype)
    hs[0] = h0
    s = xp.zeros((T, N, 1, L, A), dtype=dtype)  # tanh activations of every step, kept for the backward pass
    alphas = xp.zeros((T, N, L), dtype=dtype)
    contexts = xp.zeros((T, N, D), dtype=dtype)
    gated = xp.zeros((T, N, D), dtype=dtype)
    betas = xp.zeros((T, N, 1), dtype=dtype)
    c, lstm_caches = c0, []
    for t, n in enumerate(counts[counts > 0]):  # rows [:n] are active: the longest captions come first
        hb = hs[t, :n] @ W_hb  # (n, A + 1): the query and the gate's pre-activation
        m = None if mask is None else mask[:n]
        context, alpha = attend(features[:n], feat_proj[:n], hb[:, None, :A], w_att, m, s[t, :n])
        contexts[t, :n], alphas[t, :n] = context[:, 0], alpha[:, 0]
        beta_pre = hb[:, A:]
        beta_pre += b_beta
        _, betas[t, :n] = gate_context(beta_pre, contexts[t, :n], out=gated[t, :n])
        a[t, :n] += gated[t, :n] @ Wx_ctx
        c, lstm_cache = lstm_core_forward(a[t, :n], hs[t, :n], c[:n], Wh, hs[t + 1, :n])
        lstm_caches.append(lstm_cache)
    cache = AttentionLSTMCache(
        x_flat, features, Wx, W_hb, w_att, hs, [s], alphas, contexts, gated, betas, lstm_caches, counts
    )
    return hs[1:].transpose(1, 0, 2), alphas.transpose(1, 0, 2), cache


def attention_lstm_backward(
    dh: np.ndarray, dalpha: np.ndarray | None, cache: AttentionLSTMCache, features_grad: bool = True
) -> AttentionLSTMGrads:
    """Backpropagation through time for :func:`attention_lstm_forward`, in one loop.

    The cached tanh activations become scratch space, so a cache serves one backward pass. Only the products that
    carry the gradient to ``h_{t-1}`` run inside the loop; the weight gradients are formed after it.

    Args:
        dh: (N, T, H) upstream gradient of the hidden states (best a transposed view of a time-major array).
        dalpha: (N, T, L) upstream gradient of the attention weights (the regulariser's), or None.
        features_grad: False when the features are constants (a frozen encoder): their gradient, an (N, L, D)
            array, is not computed and None stands in its place.

    Returns:
        :class:`AttentionLSTMGrads`, one gradient per input of the forward pass (``dfeatures`` may be None).
    """
    s = take_scratch(cache.scratch)  # (T, N, 1, L, A)
    features, w_att, W_hb = cache.features, cache.w_att, cache.W_hb
    alphas, contexts, betas = cache.alphas, cache.contexts, cache.betas
    T, N, H = cache.hs.shape[0] - 1, cache.hs.shape[1], cache.hs.shape[2]
    A = w_att.shape[0]
    Wx_ctx_T = cache.Wx[cache.x_flat.shape[1] :].T  # (4H, D): the context rows
    dh = dh.transpose(1, 0, 2)  # (T, N, H)
    dalpha = None if dalpha is None else dalpha.transpose(1, 0, 2)  # (T, N, L)
    xp = array_module(dh, s)

    # zeros where a row is not active (a packed batch): the products after the loop read every row
    da = xp.zeros((T, N, 4 * H), dtype=dh.dtype)  # gradients of every step's gate pre-activations
    dhb = xp.zeros((T, N, A + 1), dtype=dh.dtype)  # gradients of the query and of the gate's pre-activation
    dcontexts = xp.zeros_like(contexts)
    de = xp.zeros_like(alphas)  # gradients of the scores
    dw_att = xp.zeros(A, dtype=dh.dtype)
    dprev_h = xp.zeros((N, H), dtype=dh.dtype)
    dprev_c = xp.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(len(cache.lstm_caches))):  # the steps that ran: those with an active row
        n = cache.counts[t]  # rows past their length keep a zero gradient until their last step
        dnext_h = dprev_h[:n]
        dnext_h += dh[t, :n]  # gradient reaching h_t: from the output at t and from step t + 1
        dnext_h, dprev_c[:n] = lstm_core_backward(dnext_h, dprev_c[:n], cache.lstm_caches[t], da[t, :n], da[t, :n])
        dgated = da[t, :n] @ Wx_ctx_T  # (n, D)
        _, dhb[t, :n, A:] = gate_context_backward(dgated, contexts[t, :n], betas[t, :n], dcontext_out=dcontexts[t, :n])
        dhA, de[t, :n], dw = attend_backward(
            dcontexts[t, :n], None if dalpha is None else dalpha[t, :n], features[:n], alphas[t, :n], s[t, :n, 0], w_att
        )
        dhb[t, :n, :A] = dhA
        dw_att += dw
        dnext_h += dhb[t, :n] @ W_hb.T
        dprev_h[:n] = dnext_h

    dx, dWx, dWh, db = _lstm_input_and_weight_grads(cache, da)
    dW_h_att, dW_beta, db_beta = _query_and_gate_weight_grads(cache.hs, dhb, cache.counts)
    dfeat_proj = _feat_proj_grad(s, de, w_att)
    # sum_t alpha_t (x) dcontext_t. einsum, not np.matmul of (N, L, T) @ (N, T, D): NumPy's stacked matmul
    # falls back to a naive loop for these shapes, some 20 times slower.
    dfeatures = xp.einsum("tnl,tnd->nld", alphas, dcontexts) if features_grad else None
    return AttentionLSTMGrads(
        dx, dfeatures, dfeat_proj, dprev_h, dprev_c, dWx, dWh, db, dW_h_att, dw_att, dW_beta, db_beta
    )


def _active_rows(counts: np.ndarray, N: int, xp: ModuleType) -> slice | np.ndarray:
    """The rows of a (T*N, ...) time-major array that ran: every row (a slice, no copy) unless packed, else the
    flat indices ``t*N + n`` of the active ones (the weight products then skip the padding too), on the device of
    ``xp``, from the host ``counts``."""
    if np.all(counts == N):
        return slice(None)
    return xp.asarray(np.flatnonzero((np.arange(N)[None, :] < counts[:, None]).ravel()))


def _lstm_input_and_weight_grads(
    cache: AttentionLSTMCache, da: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dx (N, T, W) (a transposed view), dWx (W + D, 4H), dWh (H, 4H), db (4H,) from da (T, N, 4H): one GEMM each,
    over the rows that ran."""
    T, N, H4 = da.shape
    W = cache.x_flat.shape[1]
    xp = array_module(da)
    rows = _active_rows(cache.counts, N, xp)
    da_flat = da.reshape(T * N, H4)[rows]
    dWx = xp.empty_like(cache.Wx)
    xp.matmul(cache.x_flat[rows].T, da_flat, out=dWx[:W])  # word rows
    xp.matmul(cache.gated.reshape(T * N, -1)[rows].T, da_flat, out=dWx[W:])  # context rows
    if isinstance(rows, slice):
        dx = da_flat @ cache.Wx[:W].T
    else:
        dx = xp.zeros((T * N, W), dtype=da.dtype)
        dx[rows] = da_flat @ cache.Wx[:W].T
    dWh = cache.hs[:-1].reshape(T * N, -1)[rows].T @ da_flat  # every step's input state (no copy unless packed)
    return dx.reshape(T, N, W).transpose(1, 0, 2), dWx, dWh, da_flat.sum(axis=0)


def _query_and_gate_weight_grads(
    hs: np.ndarray, dhb: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dW_h_att (H, A), dW_beta (H, 1), db_beta (1,) from dhb (T, N, A + 1), the gradients of ``h_{t-1} W_hb``."""
    T, N, A1 = dhb.shape
    xp = array_module(dhb)
    rows = _active_rows(counts, N, xp)
    dW_hb = hs[:-1].reshape(T * N, -1)[rows].T @ dhb.reshape(T * N, A1)[rows]  # (H, A + 1)
    A = A1 - 1
    return xp.ascontiguousarray(dW_hb[:, :A]), xp.ascontiguousarray(dW_hb[:, A:]), dhb[:, :, A:].sum(axis=(0, 1))


def _feat_proj_grad(s: np.ndarray, de: np.ndarray, w_att: np.ndarray) -> np.ndarray:
    """dfeat_proj (N, L, A) from de (T, N, L) and s (T, N, 1, L, A), which the backward loop left holding
    ``de_t * s_t^2``.

    feat_proj enters every step: its gradient is ``w_att * sum_t (de_t - de_t * s_t^2)``; the sum over t of s is
    one matrix-vector product (each element read once) instead of T accumulations.
    """
    T, N, _, L, A = s.shape
    xp = array_module(s)
    dfeat_proj = (xp.ones(T, dtype=s.dtype) @ s.reshape(T, -1)).reshape(N, L, A)
    xp.subtract(de.sum(axis=0)[:, :, None], dfeat_proj, out=dfeat_proj)
    dfeat_proj *= w_att
    return dfeat_proj
