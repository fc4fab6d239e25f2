"""Soft attention of "Show, Attend and Tell" (Xu et al. 2015): additive attention over L grid locations, the gating
scalar beta and the doubly stochastic regulariser. The LSTM decoder that reads the attended context is
:mod:`rnncap.nn.attention_lstm`; both run the shared kernels of this module.

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

from types import ModuleType
from typing import NamedTuple

import numpy as np

from rnncap.backend import array_module, einsum_into
from rnncap.nn.activations import sigmoid_

# ------------------------------------------------------------------------------------------------ shared kernels
# The layers below, the decoder recurrence (rnncap.nn.attention_lstm) and decoding run the same arithmetic through
# these functions. Attention is computed for B queries per image (B = 1 while training; B beams while decoding), so
# that beams share their image's features and projection instead of copying them.
#
# Speed: a step's arithmetic is light, but its (N, B, L, A) activations (21 MB for a batch of 128 on a 9 x 9 grid)
# and the (N, L, D) grid (53 MB) are far larger than a core's cache. Done array by array, the add, the tanh, the
# scores, the softmax and the context would each stream the activations through memory again, and memory traffic
# bounds the step. So the kernels work through the batch in blocks of images whose activations fit a core's L2
# cache (about 1 MiB): each block goes through the whole chain while it is cached, and the activations travel to
# memory once, to be kept for the backward pass. The loop is over a few dozen blocks, never over single images;
# inside a block everything is vectorised. (The blocks could be shared out to a pool of Python threads, since NumPy
# releases the GIL in its loops; measured on 2 cores that halves the kernels' time alone but gains nothing inside a
# training step, where OpenBLAS's worker threads spin on the second core between the matrix products.) On a GPU
# the whole batch is one block: its kernels stream from device memory anyway, and every block costs launches.

_BLOCK_BYTES = 1 << 20

# features, prev_h, W_h_att, w_att, alpha, [s]: the tanh activations s, held in a list so that a backward pass can
# take them once (see take_scratch).
AttentionStepCache = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray | None]]
GateCache = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # context, prev_h, W_beta, beta


def _blocks(N: int, bytes_per_image: int, xp: ModuleType) -> list[slice]:
    """Consecutive blocks of the N images, each holding about ``_BLOCK_BYTES`` of activations (one block of all N
    off the host, ``xp`` not NumPy)."""
    if xp is not np:
        return [slice(0, N)]
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
    xp = array_module(features, feat_proj, hA)
    if s is None:
        s = xp.empty((N, B, L, A), dtype=dtype)
    alpha = xp.empty((N, B, L), dtype=dtype)
    context = xp.empty((N, B, D), dtype=dtype)
    for rows in _blocks(N, s[0].nbytes, xp):
        s_blk, e = s[rows], alpha[rows]  # views
        xp.add(feat_proj[rows, None, :, :], hA[rows, :, None, :], out=s_blk)  # (n, B, L, A)
        xp.tanh(s_blk, out=s_blk)
        xp.matmul(s_blk.reshape(-1, A), w_att, out=e.reshape(-1))  # scores, one matrix-vector product
        if mask is not None:
            xp.copyto(e, -np.inf, where=~mask[rows, None, :])  # exp(-inf - max) = 0: masked weights are exactly 0
        e -= e.max(axis=2, keepdims=True)  # stable softmax: the largest score becomes exp(0) = 1
        xp.exp(e, out=e)
        e /= e.sum(axis=2, keepdims=True)
        einsum_into(context[rows], "nbl,nld->nbd", e, features[rows])  # (einsum: no stacked tiny GEMMs)
    return context, alpha


def attend_backward(
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
    xp = array_module(s, dcontext)
    blocks = _blocks(N, s[0].nbytes, xp)
    de = xp.empty((N, L), dtype=dtype)
    dhA = xp.empty((N, A), dtype=dtype)
    dw_att = xp.empty((len(blocks), A), dtype=dtype)
    for i, rows in enumerate(blocks):
        g, a, s_blk = de[rows], alpha[rows], s[rows]  # views
        einsum_into(g, "nld,nd->nl", features[rows], dcontext[rows])  # through the context
        if dalpha is not None:
            g += dalpha[rows]
        g -= xp.einsum("nl,nl->n", a, g)[:, None]  # softmax backward: alpha * (g - sum(alpha * g))
        g *= a
        xp.matmul(g.reshape(-1), s_blk.reshape(-1, A), out=dw_att[i])  # before s is overwritten
        # d tanh = 1 - s^2. Split as de - de * s^2, only de * s^2 is a full (n, L, A) array; it is written over s,
        # whose activations are no longer needed, so that the step allocates nothing of that size.
        xp.multiply(s_blk, s_blk, out=s_blk)
        s_blk *= g[:, :, None]
        xp.subtract(g.sum(axis=1)[:, None], s_blk.sum(axis=1), out=dhA[rows])  # sum over locations, / w_att
    dhA *= w_att
    return dhA, de, dw_att.sum(axis=0)


def gate_context(
    beta_pre: np.ndarray, context: np.ndarray, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """beta_pre (N, 1) -> beta (N, 1) in place; returns ``beta * context`` (N, D) (into ``out`` if given) and beta."""
    beta = sigmoid_(beta_pre)
    return array_module(beta_pre).multiply(beta, context, out=out), beta


def gate_context_backward(
    dgated: np.ndarray, context: np.ndarray, beta: np.ndarray, dcontext_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Backward of :func:`gate_context`: dgated (N, D) -> dcontext (N, D), dbeta_pre (N, 1)."""
    xp = array_module(dgated, context)
    dbeta = xp.einsum("nd,nd->n", dgated, context)[:, None]  # (N, 1), without an (N, D) temporary
    dbeta *= beta * (1 - beta)
    return xp.multiply(dgated, beta, out=dcontext_out), dbeta


def check_mask(mask: np.ndarray | None, N: int, L: int) -> None:
    """Refuse a location mask that is not (N, L) booleans or that leaves a row nothing to attend to."""
    if mask is None:
        return
    if mask.shape != (N, L) or mask.dtype != np.bool_:
        raise ValueError(f"mask must be a boolean array of shape (N, L) = ({N}, {L}), got {mask.dtype} {mask.shape}")
    empty = array_module(mask).flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"mask leaves no location to attend to in rows {empty[:10].tolist()}")


def take_scratch(holder: list[np.ndarray | None]) -> np.ndarray:
    """The cached activations, handed out once: a second backward pass would read overwritten values."""
    if holder[0] is None:
        raise RuntimeError("this cache was already used by a backward pass (its activations are scratch space now)")
    s, holder[0] = holder[0], None
    return s


# ------------------------------------------------------------------------------------------------ one step


def attention_step_forward(
    features: np.ndarray,
    feat_proj: np.ndarray,
    prev_h: np.ndarray,
    W_h_att: np.ndarray,
    w_att: np.ndarray,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, AttentionStepCache]:
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
    check_mask(mask, N, L)
    s = array_module(feat_proj).empty((N, 1, L, w_att.shape[0]), dtype=feat_proj.dtype)
    hA = prev_h @ W_h_att  # (N, A)
    context, alpha = attend(features, feat_proj, hA[:, None, :], w_att, mask, s)
    return context[:, 0], alpha[:, 0], (features, prev_h, W_h_att, w_att, alpha[:, 0], [s[:, 0]])


class AttentionStepGrads(NamedTuple):
    """Gradients of :func:`attention_step_backward`, in the order of :func:`attention_step_forward`'s inputs."""

    dfeatures: np.ndarray  # (N, L, D)
    dfeat_proj: np.ndarray  # (N, L, A)
    dprev_h: np.ndarray  # (N, H)
    dW_h_att: np.ndarray  # (H, A)
    dw_att: np.ndarray  # (A,)


def attention_step_backward(dcontext: np.ndarray, dalpha: np.ndarray, cache: AttentionStepCache) -> AttentionStepGrads:
    """Backward pass of :func:`attention_step_forward`.

    The cached activations become scratch space, so a cache serves one backward pass (as in training).

    Args:
        dcontext: (N, D); dalpha: (N, L) upstream gradients (e.g. of the doubly stochastic regulariser).

    Returns:
        :class:`AttentionStepGrads`: dfeatures (N, L, D), dfeat_proj (N, L, A), dprev_h (N, H), dW_h_att (H, A),
        dw_att (A,).
    """
    features, prev_h, W_h_att, w_att, alpha, holder = cache
    s = take_scratch(holder)
    dhA, de, dw_att = attend_backward(dcontext, dalpha, features, alpha, s, w_att)
    dfeat_proj = array_module(s).subtract(de[:, :, None], s, out=s)
    dfeat_proj *= w_att
    dfeatures = alpha[:, :, None] * dcontext[:, None, :]
    return AttentionStepGrads(dfeatures, dfeat_proj, dhA @ W_h_att.T, prev_h.T @ dhA, dw_att)


def attention_gate_forward(
    context: np.ndarray, prev_h: np.ndarray, W_beta: np.ndarray, b_beta: np.ndarray
) -> tuple[np.ndarray, GateCache]:
    """The gating scalar: ``beta = sigmoid(prev_h @ W_beta + b_beta)`` scales the context.

    Args:
        context: (N, D); prev_h: (N, H); W_beta: (H, 1); b_beta: (1,).

    Returns:
        gated: (N, D) ``beta * context``; cache.
    """
    beta_pre = prev_h @ W_beta  # (N, 1)
    beta_pre += b_beta
    gated, beta = gate_context(beta_pre, context)
    return gated, (context, prev_h, W_beta, beta)


def attention_gate_backward(
    dgated: np.ndarray, cache: GateCache
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward of :func:`attention_gate_forward`: dgated (N, D) -> dcontext, dprev_h, dW_beta (H, 1), db_beta (1,)."""
    context, prev_h, W_beta, beta = cache
    dcontext, dbeta_pre = gate_context_backward(dgated, context, beta)
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
    xp = array_module(alpha)
    m = mask.astype(alpha.dtype)
    gap = 1 - xp.einsum("ntl,nt->nl", alpha, m)  # (N, L)
    loss = weight * float(xp.sum(xp.square(gap, dtype=np.float64))) / N
    dcover = gap * alpha.dtype.type(-2 * weight / N)  # (N, L): d loss / d (sum_t alpha)
    return loss, dcover[:, None, :] * m[:, :, None]
