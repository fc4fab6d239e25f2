"""Soft attention of "Show, Attend and Tell" (Xu et al. 2015): additive attention over L grid locations, the gating
scalar beta, the doubly stochastic regulariser, and the LSTM decoder that reads the attended context.

Names and shapes: N batch, T time, L grid locations, D feature channels, A attention width, H hidden, W word vector.
At step t, with the previous hidden state ``h = h_{t-1}``:

- scores ``e_l = w_att . tanh(feat_proj_l + h W_h_att)`` (Bahdanau's additive attention), where
  ``feat_proj = features W_feat + b_feat`` (N, L, A) is computed once per batch, not once per step;
- weights ``alpha = softmax_l(e)``, over the unmasked locations only (masked ones get exactly 0), computed from
  max-shifted scores so that no score overflows;
- context ``z = sum_l alpha_l features_l`` (N, D);
- gate ``beta = sigmoid(h W_beta + b_beta)``, one scalar per caption (the paper's Section 4.2.1), and the LSTM input
  ``[x_t; beta * z]``;
- regulariser ``lambda * sum_l (1 - sum_t alpha_tl)^2`` per caption (the paper's eq. 14), over the steps that count.

The score has no bias: a constant added to every location's score cancels in the softmax.

References: Xu et al., "Show, Attend and Tell", ICML 2015, and its Theano code (kelvinxu/arctic-captions:
``init_state``/``init_memory`` = tanh of affine maps of the mean annotation, the scalar selector, ``alpha_c``);
Bahdanau et al. 2015 (additive attention); Stanford CS231n assignment 3 (the forward/backward pattern).
"""

from __future__ import annotations

import numpy as np

from rnncap.nn.activations import sigmoid_
from rnncap.nn.lstm import LSTM

# ------------------------------------------------------------------------------------------------ shared kernels
# The layers below, the decoder recurrence and decoding run the same arithmetic through these functions. Attention is
# computed for B queries per image (B = 1 while training; B beams while decoding), so that beams share their
# image's features and projection instead of copying them.
#
# Speed: a step's arithmetic is light, but its (N, B, L, A) activations (21 MB for a batch of 128 on a 9 x 9 grid)
# and the (N, L, D) grid (53 MB) are far larger than a core's cache. Done array by array, the add, the tanh, the
# scores, the softmax and the context would each stream the activations through memory again, and memory traffic
# bounds the step. So the kernels work through the batch in blocks of images whose activations fit a core's L2
# cache (about 1 MiB): each block goes through the whole chain while it is cached, and the activations travel to
# memory once, to be kept for the backward pass. The loop is over a few dozen blocks, never over single images;
# inside a block everything is vectorised. (The blocks could be shared out to a pool of Python threads, since NumPy
# releases the GIL in its loops; measured on 2 cores that halves the kernels' time alone but gains nothing inside a
# training step, where OpenBLAS's worker threads spin on the second core between the matrix products.)

_BLOCK_BYTES = 1 << 20


def _blocks(N: int, bytes_per_image: int) -> list[slice]:
    """Consecutive blocks of the N images, each holding about ``_BLOCK_BYTES`` of activations."""
    size = max(1, _BLOCK_BYTES // max(1, bytes_per_image))
    return [slice(start, min(start + size, N)) for start in range(0, N, size)]


def attend(
    features: np.ndarray,
    feat_proj: np.ndarray,
    hA: np.ndarray,
    w_att: np.ndarray,
    mask: np.ndarray | None = None,
    s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores, weights and context for B queries per image (forward only: decoding uses it directly).

    Args:
        features: (N, L, D); feat_proj: (N, L, A); hA: (N, B, A) the queries' part ``h W_h_att``; w_att: (A,);
        mask: (N, L) booleans or None; s: (N, B, L, A) buffer that receives ``tanh(feat_proj + hA)`` (the
        backward pass needs it); None: a fresh one.

    Returns:
        context (N, B, D), alpha (N, B, L).
    """
    N, B, A = hA.shape
    L, D = features.shape[1:]
    dtype = feat_proj.dtype
    if s is None:
        s = np.empty((N, B, L, A), dtype=dtype)
    alpha = np.empty((N, B, L), dtype=dtype)
    context = np.empty((N, B, D), dtype=dtype)
    for rows in _blocks(N, s[0].nbytes):
        s_blk, e = s[rows], alpha[rows]  # views
        np.add(feat_proj[rows, None, :, :], hA[rows, :, None, :], out=s_blk)  # (n, B, L, A)
        np.tanh(s_blk, out=s_blk)
        np.matmul(s_blk.reshape(-1, A), w_att, out=e.reshape(-1))  # scores, one matrix-vector product
        if mask is not None:
            np.copyto(e, -np.inf, where=~mask[rows, None, :])  # exp(-inf - max) = 0: masked weights are exactly 0
        e -= e.max(axis=2, keepdims=True)  # stable softmax: the largest score becomes exp(0) = 1
        np.exp(e, out=e)
        e /= e.sum(axis=2, keepdims=True)
        np.einsum("nbl,nld->nbd", e, features[rows], out=context[rows])  # (einsum: no stacked tiny GEMMs)
    return context, alpha


def _attend_backward(
    dcontext: np.ndarray,
    dalpha: np.ndarray | None,
    features: np.ndarray,
    alpha: np.ndarray,
    s: np.ndarray,
    w_att: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attend` for B = 1, reusing ``s`` as scratch space (in the same blocks).

    Args:
        dcontext: (N, D); dalpha: (N, L) or None; features: (N, L, D); alpha: (N, L); s: (N, L, A) the cached
        ``tanh`` activations, overwritten with ``de * s**2``; w_att: (A,).

    Returns:
        dhA (N, A), de (N, L) the gradient of the scores, dw_att (A,). The gradient of ``feat_proj`` is
        ``w_att * (de[:, :, None] - s)`` with the overwritten ``s``: the caller forms it (once, summed over time,
        for a sequence).
    """
    N, L, A = s.shape
    dtype = s.dtype
    blocks = _blocks(N, s[0].nbytes)
    de = np.empty((N, L), dtype=dtype)
    dhA = np.empty((N, A), dtype=dtype)
    dw_att = np.empty((len(blocks), A), dtype=dtype)
    for i, rows in enumerate(blocks):
        g, a, s_blk = de[rows], alpha[rows], s[rows]  # views
        np.einsum("nld,nd->nl", features[rows], dcontext[rows], out=g)  # through the context
        if dalpha is not None:
            g += dalpha[rows]
        g -= np.einsum("nl,nl->n", a, g)[:, None]  # softmax backward: alpha * (g - sum(alpha * g))
        g *= a
        np.matmul(g.reshape(-1), s_blk.reshape(-1, A), out=dw_att[i])  # before s is overwritten
        # d tanh = 1 - s^2. Split as de - de * s^2, only de * s^2 is a full (n, L, A) array; it is written over s,
        # whose activations are no longer needed, so that the step allocates nothing of that size.
        np.multiply(s_blk, s_blk, out=s_blk)
        s_blk *= g[:, :, None]
        np.subtract(g.sum(axis=1)[:, None], s_blk.sum(axis=1), out=dhA[rows])  # sum over locations, / w_att
    dhA *= w_att
    return dhA, de, dw_att.sum(axis=0)


def _gate(beta_pre: np.ndarray, context: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """beta_pre (N, 1) -> beta (N, 1) in place; returns ``beta * context`` (N, D) (into ``out`` if given) and beta."""
    beta = sigmoid_(beta_pre)
    return np.multiply(beta, context, out=out), beta


def _gate_backward(
    dgated: np.ndarray, context: np.ndarray, beta: np.ndarray, dcontext_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Backward of :func:`_gate`: dgated (N, D) -> dcontext (N, D), dbeta_pre (N, 1)."""
    dbeta = np.einsum("nd,nd->n", dgated, context)[:, None]  # (N, 1), without an (N, D) temporary
    dbeta *= beta * (1 - beta)
    return np.multiply(dgated, beta, out=dcontext_out), dbeta


def _check_mask(mask: np.ndarray | None, N: int, L: int) -> None:
    if mask is None:
        return
    if mask.shape != (N, L) or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a boolean array of shape (N, L) = ({N}, {L}), got {mask.dtype} {mask.shape}")
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"mask leaves no location to attend to in rows {empty[:10].tolist()}")


# ------------------------------------------------------------------------------------------------ one step


def attention_step_forward(
    features: np.ndarray,
    feat_proj: np.ndarray,
    prev_h: np.ndarray,
    W_h_att: np.ndarray,
    w_att: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One step of additive soft attention.

    Args:
        features: (N, L, D) grid features.
        feat_proj: (N, L, A) their projection ``features @ W_feat + b_feat``, computed once per batch.
        prev_h: (N, H) the decoder's previous hidden state.
        W_h_att: (H, A) projection of the hidden state.
        w_att: (A,) scoring vector.
        mask: (N, L) booleans, True where a location exists (grids of different sizes in one batch); None: all.

    Returns:
        context: (N, D) ``sum_l alpha_l features_l``.
        alpha: (N, L) attention weights, >= 0, summing to 1 over the unmasked locations of each row.
        cache: for :func:`attention_step_backward`.
    """
    N, L, _ = features.shape
    _check_mask(mask, N, L)
    s = np.empty((N, 1, L, w_att.shape[0]), dtype=feat_proj.dtype)
    hA = prev_h @ W_h_att  # (N, A)
    context, alpha = attend(features, feat_proj, hA[:, None, :], w_att, mask, s)
    return context[:, 0], alpha[:, 0], (features, prev_h, W_h_att, w_att, alpha[:, 0], [s[:, 0]])


def attention_step_backward(
    dcontext: np.ndarray, dalpha: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`attention_step_forward`.

    The cached activations become scratch space, so a cache serves one backward pass (as in training).

    Args:
        dcontext: (N, D); dalpha: (N, L) upstream gradients (e.g. of the doubly stochastic regulariser).

    Returns:
        dfeatures (N, L, D), dfeat_proj (N, L, A), dprev_h (N, H), dW_h_att (H, A), dw_att (A,).
    """
    features, prev_h, W_h_att, w_att, alpha, holder = cache
    s = _take_scratch(holder)
    dhA, de, dw_att = _attend_backward(dcontext, dalpha, features, alpha, s, w_att)
    dfeat_proj = np.subtract(de[:, :, None], s, out=s)
    dfeat_proj *= w_att
    dfeatures = alpha[:, :, None] * dcontext[:, None, :]
    return dfeatures, dfeat_proj, dhA @ W_h_att.T, prev_h.T @ dhA, dw_att


def _take_scratch(holder: list) -> np.ndarray:
    """The cached activations, handed out once: a second backward pass would read overwritten values."""
    if holder[0] is None:
        raise RuntimeError("this cache was already used by a backward pass (its activations are scratch space now)")
    s, holder[0] = holder[0], None
    return s


def attention_gate_forward(
    context: np.ndarray, prev_h: np.ndarray, W_beta: np.ndarray, b_beta: np.ndarray
) -> tuple[np.ndarray, tuple]:
    """The gating scalar: ``beta = sigmoid(prev_h @ W_beta + b_beta)`` scales the context.

    Args:
        context: (N, D); prev_h: (N, H); W_beta: (H, 1); b_beta: (1,).

    Returns:
        gated: (N, D) ``beta * context``; cache.
    """
    beta_pre = prev_h @ W_beta  # (N, 1)
    beta_pre += b_beta
    gated, beta = _gate(beta_pre, context)
    return gated, (context, prev_h, W_beta, beta)


def attention_gate_backward(dgated: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention_gate_forward`: dgated (N, D) -> dcontext, dprev_h, dW_beta (H, 1), db_beta (1,)."""
    context, prev_h, W_beta, beta = cache
    dcontext, dbeta_pre = _gate_backward(dgated, context, beta)
    return dcontext, dbeta_pre @ W_beta.T, prev_h.T @ dbeta_pre, dbeta_pre.sum(axis=0)


def doubly_stochastic_loss(alpha: np.ndarray, mask: np.ndarray, weight: float) -> tuple[float, np.ndarray]:
    """The paper's regulariser: every location should receive, over the caption, a total weight of about 1.

    ``loss = weight * sum_{n,l} (1 - sum_t mask[n,t] * alpha[n,t,l])^2 / N``: summed over locations as in the
    paper (eq. 14) and averaged over captions like :func:`rnncap.nn.temporal_softmax_loss`; steps whose target is
    padding do not count.

    Args:
        alpha: (N, T, L) attention weights; mask: (N, T) booleans, True where a step counts; weight: lambda.

    Returns:
        loss (a Python float, summed in float64); dalpha (N, T, L), zero at the steps that do not count.
    """
    N = alpha.shape[0]
    m = mask.astype(alpha.dtype)
    gap = 1 - np.einsum("ntl,nt->nl", alpha, m)  # (N, L)
    loss = weight * float(np.sum(np.square(gap, dtype=np.float64))) / N
    dcover = gap * alpha.dtype.type(-2 * weight / N)  # (N, L): d loss / d (sum_t alpha)
    return loss, dcover[:, None, :] * m[:, :, None]


# ------------------------------------------------------------------------------------------------ the decoder


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
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The attention decoder over a sequence: at every step attend with ``h_{t-1}``, gate the context, and run
    the LSTM (:data:`rnncap.nn.LSTM`'s core) on ``[x_t; beta * context]``.

    As in :func:`rnncap.nn.sequence_forward`, the word part of every step's gates is one matrix product before
    the loop, the sequence runs time-major, and ``x`` may be a transposed view of a time-major array. The hidden
    state is multiplied by ``[W_h_att | W_beta]`` in one product per step.

    Args:
        x: (N, T, W) word vectors. features: (N, L, D). feat_proj: (N, L, A) ``features @ W_feat + b_feat``.
        h0, c0: (N, H) initial states. Wx: (W + D, 4H) input weights, word rows first, then context rows.
        Wh: (H, 4H); b: (4H,) (gates i, f, o, g). W_h_att: (H, A); w_att: (A,); W_beta: (H, 1); b_beta: (1,).
        mask: (N, L) booleans, True where a location exists; None: every location.

    Returns:
        h: (N, T, H) hidden states; alpha: (N, T, L) attention weights (both transposed views of time-major
        arrays); cache for :func:`attention_lstm_backward`.
    """
    N, T, W = x.shape
    _, L, D = features.shape
    H, A = h0.shape[1], w_att.shape[0]
    _check_mask(mask, N, L)
    if Wx.shape != (W + D, 4 * H):
        raise ValueError(f"Wx must have shape (W + D, 4H) = ({W + D}, {4 * H}), got {Wx.shape}")
    dtype = feat_proj.dtype
    Wx_word, Wx_ctx = Wx[:W], Wx[W:]  # views: the word rows and the context rows
    x_flat = x.transpose(1, 0, 2).reshape(T * N, W)
    a = (x_flat @ Wx_word).reshape(T, N, 4 * H)  # the word part of every step's gates, one GEMM
    a += b
    W_hb = np.concatenate([W_h_att, W_beta], axis=1)  # (H, A + 1)

    hs = np.empty((T + 1, N, H), dtype=dtype)  # hs[t] is h_{t-1} for step t
    hs[0] = h0
    s = np.empty((T, N, 1, L, A), dtype=dtype)  # tanh activations of every step, kept for the backward pass
    alphas = np.empty((T, N, L), dtype=dtype)
    contexts = np.empty((T, N, D), dtype=dtype)
    gated = np.empty((T, N, D), dtype=dtype)
    betas = np.empty((T, N, 1), dtype=dtype)
    c, lstm_caches = c0, []
    for t in range(T):
        hb = hs[t] @ W_hb  # (N, A + 1): the query and the gate's pre-activation
        context, alpha = attend(features, feat_proj, hb[:, None, :A], w_att, mask, s[t])
        contexts[t], alphas[t] = context[:, 0], alpha[:, 0]
        beta_pre = hb[:, A:]
        beta_pre += b_beta
        _, betas[t] = _gate(beta_pre, contexts[t], out=gated[t])
        a[t] += gated[t] @ Wx_ctx
        c, lstm_cache = LSTM.core_forward(a[t], hs[t], c, Wh, hs[t + 1])
        lstm_caches.append(lstm_cache)
    cache = (x_flat, features, Wx, W_hb, w_att, hs, [s], alphas, contexts, gated, betas, lstm_caches)
    return hs[1:].transpose(1, 0, 2), alphas.transpose(1, 0, 2), cache


def attention_lstm_backward(
    dh: np.ndarray, dalpha: np.ndarray | None, cache: tuple, features_grad: bool = True
) -> tuple[np.ndarray | None, ...]:
    """Backpropagation through time for :func:`attention_lstm_forward`, in one loop.

    The cached tanh activations become scratch space, so a cache serves one backward pass. Weight gradients are
    one matrix product each over all steps after the loop; only the products that carry the gradient to
    ``h_{t-1}`` run inside it.

    Args:
        dh: (N, T, H) upstream gradient of the hidden states (best a transposed view of a time-major array).
        dalpha: (N, T, L) upstream gradient of the attention weights (the regulariser's), or None.
        features_grad: False when the features are constants (a frozen encoder): their gradient, an (N, L, D)
            array, is not computed and None stands in its place.

    Returns:
        dx (N, T, W), dfeatures (N, L, D) or None, dfeat_proj (N, L, A), dh0 (N, H), dc0 (N, H),
        dWx (W + D, 4H), dWh (H, 4H), db (4H,), dW_h_att (H, A), dw_att (A,), dW_beta (H, 1), db_beta (1,).
    """
    x_flat, features, Wx, W_hb, w_att, hs, holder, alphas, contexts, gated, betas, lstm_caches = cache
    s = _take_scratch(holder)
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    W, L, A = x_flat.shape[1], features.shape[1], w_att.shape[0]
    dtype = dh.dtype
    Wx_ctx_T = Wx[W:].T
    dh = dh.transpose(1, 0, 2)  # (T, N, H)
    dalpha = None if dalpha is None else dalpha.transpose(1, 0, 2)  # (T, N, L)

    da = np.empty((T, N, 4 * H), dtype=dtype)
    dhb = np.empty((T, N, A + 1), dtype=dtype)  # gradients of the query and of the gate's pre-activation
    dcontexts = np.empty_like(contexts)
    de = np.empty_like(alphas)
    dw_att = np.zeros(A, dtype=dtype)
    dprev_h = np.zeros((N, H), dtype=dtype)
    dprev_c = np.zeros((N, H), dtype=dtype)
    for t in reversed(range(T)):
        dprev_h += dh[t]  # gradient reaching h_t: from the output at t and from step t + 1
        dprev_h, dprev_c = LSTM.core_backward(dprev_h, dprev_c, lstm_caches[t], da[t], da[t])
        dgated = da[t] @ Wx_ctx_T  # (N, D)
        _, dhb[t, :, A:] = _gate_backward(dgated, contexts[t], betas[t], dcontext_out=dcontexts[t])
        dhA, de[t], dw = _attend_backward(
            dcontexts[t], None if dalpha is None else dalpha[t], features, alphas[t], s[t, :, 0], w_att
        )
        dhb[t, :, :A] = dhA
        dw_att += dw
        dprev_h += dhb[t] @ W_hb.T

    TN = T * N
    da_flat = da.reshape(TN, 4 * H)
    dWx = np.empty_like(Wx)
    np.matmul(x_flat.T, da_flat, out=dWx[:W])
    np.matmul(gated.reshape(TN, -1).T, da_flat, out=dWx[W:])
    dx = (da_flat @ Wx[:W].T).reshape(T, N, W).transpose(1, 0, 2)
    h_prev = hs[:-1].reshape(TN, H)  # every step's input state, no copy
    dWh = h_prev.T @ da_flat
    dW_hb = h_prev.T @ dhb.reshape(TN, A + 1)
    # feat_proj enters every step: its gradient is w_att * sum_t (de_t - de_t * s_t^2); s holds de_t * s_t^2,
    # summed over t by one matrix-vector product (each element read once) instead of T accumulations.
    dfeat_proj = (np.ones(T, dtype=dtype) @ s.reshape(T, -1)).reshape(N, L, A)
    np.subtract(de.sum(axis=0)[:, :, None], dfeat_proj, out=dfeat_proj)
    dfeat_proj *= w_att
    dfeatures = None
    if features_grad:
        # sum_t alpha_t (x) dcontext_t. einsum, not np.matmul of (N, L, T) @ (N, T, D): NumPy's stacked matmul
        # falls back to a naive loop for these shapes, some 20 times slower.
        dfeatures = np.einsum("tnl,tnd->nld", alphas, dcontexts)
    return (
        dx,
        dfeatures,
        dfeat_proj,
        dprev_h,
        dprev_c,
        dWx,
        dWh,
        da_flat.sum(axis=0),
        np.ascontiguousarray(dW_hb[:, :A]),
        dw_att,
        np.ascontiguousarray(dW_hb[:, A:]),
        dhb[:, :, A:].sum(axis=(0, 1)),  # (1,)
    )
