"""The parts of a captioning loss that every decoder shares: the words going in and the vocabulary loss coming out.

A captioner trained with teacher forcing reads ``<START> w1 ... wn`` and is scored on predicting ``w1 ... <END>``.
What differs between models is only the recurrent network in between (``CaptioningRNN``'s cells, the attention
LSTM), so the word side is here once:

- :func:`shift_captions`: captions -> time-major input ids, target ids and the mask of targets that count;
- :func:`length_order`: the order that sorts a batch by caption length, for packed sequences
  (:mod:`rnncap.nn.packed`: the recurrence then skips the padding, forward and backward);
- :func:`time_major_draws`: the dropout draws of a sorted batch, each caption's own (:class:`~rnncap.nn.DropoutDraws`);
- :func:`embed_words_forward` / :func:`embed_words_backward`: ids -> word vectors, with dropout;
- :func:`vocab_loss_forward` / :func:`vocab_loss_backward`: hidden states -> scores -> softmax loss, with dropout,
  computed only where a target counts (the vocabulary projection is the largest product of a training step,
  and padding after ``<END>`` would only be multiplied by zero weights).

Everything is time-major, (T, N, ...): each time step then reads contiguous memory. The captions' bookkeeping
(shifting, lengths, order) runs on the host, where the ids steer the loops; the models move what the maths reads
(ids, masks, dropout draws) to their device (:mod:`rnncap.backend`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rnncap.backend import array_module, device_of, to_device
from rnncap.nn import (
    affine_backward,
    affine_forward,
    dropout_backward,
    dropout_forward,
    softmax_cross_entropy,
    word_embedding_backward,
    word_embedding_forward,
)
from rnncap.nn.dropout import DropoutDraws
from rnncap.nn.packed import active_from_lengths, sort_by_length


def shift_captions(captions: np.ndarray, null_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split (N, T+1) captions into what the decoder reads and what it must predict.

    Returns:
        ids_in (T', N), ids_out (T', N) and mask (T', N) (True where the target is not ``<NULL>``), time-major,
        with T' <= T: columns after the batch's longest caption are all padding and change neither the loss nor
        the gradients, so they are dropped (T' = 1 if every target is padding).
    """
    mask = captions[:, 1:] != null_id  # (N, T)
    T = int(np.flatnonzero(mask.any(axis=0))[-1]) + 1 if mask.any() else 1
    return captions[:, :T].T, captions[:, 1 : T + 1].T, mask[:, :T].T


def length_order(captions: np.ndarray, null_id: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutation that sorts (N, T+1) captions by length, longest first, and the sorted (N,) lengths.

    A caption's length is the number of steps the decoder must run for it: up to its last target that is not
    ``<NULL>`` (so that a packed recurrence, which stops each row there, loses no counted target).
    """
    counted = captions[:, 1:] != null_id  # (N, T)
    lengths = np.where(counted.any(axis=1), counted.shape[1] - np.argmax(counted[:, ::-1], axis=1), 0)
    order = sort_by_length(lengths)
    return order, lengths[order]


def packed_steps(lengths: np.ndarray, T: int) -> np.ndarray | None:
    """(N,) sorted lengths -> the (T,) counts of active rows for the recurrence's ``active``; None when no row
    stops early (packing would only copy)."""
    return None if lengths.min() >= T else active_from_lengths(lengths, T)


def time_major_draws(
    draws: DropoutDraws | None, order: np.ndarray, full_steps: int, steps: int, width: int, device: str = "cpu"
) -> np.ndarray | None:
    """(steps, N, width) dropout uniforms on ``device`` for a batch sorted by ``order`` (host), time-major, or None
    without draws.

    Each caption's draws follow it through the sort and are drawn over the full padded length ``full_steps``
    whatever the batch's longest caption (of which the first ``steps`` are used), so that they depend on the
    caption's place in the global batch alone: a data-parallel process holding part of the batch drops the same
    units as one process holding all of it.
    """
    if draws is None:
        return None
    return to_device(draws.per_caption(len(order), (full_steps, width))[order, :steps].transpose(1, 0, 2), device)


def embed_words_forward(
    ids_in: np.ndarray, W_embed: np.ndarray, dropout: float, draws: np.ndarray | None
) -> tuple[np.ndarray, Any]:
    """(T, N) ids -> (T, N, W) word vectors, units dropped with probability ``dropout`` where ``draws`` (T, N, W)
    uniforms fall below it (none dropped without draws)."""
    x, embed_cache = word_embedding_forward(ids_in, W_embed)
    x, drop_cache = _dropout(x, dropout, draws)
    return x, (embed_cache, drop_cache)


def embed_words_backward(dx: np.ndarray, cache: Any) -> np.ndarray:
    """(T, N, W) upstream gradient -> dW_embed (V, W)."""
    embed_cache, drop_cache = cache
    return word_embedding_backward(dropout_backward(dx, drop_cache), embed_cache)


def vocab_loss_forward(
    h: np.ndarray,
    ids_out: np.ndarray,
    mask: np.ndarray,
    W_vocab: np.ndarray,
    b_vocab: np.ndarray,
    dropout: float,
    draws: np.ndarray | None,
    caption_weights: np.ndarray | None = None,
    excluded: Sequence[int] = (),
) -> tuple[float, Any]:
    """Softmax loss of the next words, summed over time and averaged over the N captions.

    Args:
        h: (T, N, H) hidden states (a transposed view is fine).
        ids_out: (T, N) target ids; mask: (T, N) which of them count; both on ``h``'s device.
        W_vocab: (H, V); b_vocab: (V,).
        dropout: probability of dropping a unit of ``h`` where its (T, N, H) uniform ``draws`` fall below it (none
            dropped without draws).
        caption_weights: (N,) a weight per caption (None: 1 each): the loss is
            ``-sum_n caption_weights[n] * sum_t log p(ids_out[t, n]) / N``, the surrogate loss of self-critical
            training when the weights are the advantages of sampled captions.
        excluded: ids left out of the softmax (the tokens a sampler never draws), so that ``p`` is the
            distribution the captions were drawn from; no target may be one of them.

    Returns:
        loss, and the cache :func:`vocab_loss_backward` takes.
    """
    T, N, H = h.shape
    xp = array_module(h)
    h_flat = h.reshape(T * N, H)  # a view when h is time-major in memory
    everything_counts = bool(mask.all())  # then gathering and scattering rows would only copy
    counted = slice(None) if everything_counts else xp.flatnonzero(mask.ravel())  # rows of h_flat
    draws_counted = None if draws is None else to_device(draws, device_of(h)).reshape(T * N, H)[counted]
    h_counted, drop_cache = _dropout(h_flat[counted], dropout, draws_counted)  # (M, H)
    scores, vocab_cache = affine_forward(h_counted, W_vocab, b_vocab)  # (M, V)
    if len(excluded):
        left_out = xp.asarray(list(excluded))
        if (xp.isin(ids_out, left_out) & mask).any():
            raise ValueError(f"a target is one of the ids {list(excluded)} that the weighted loss leaves out")
        scores[:, left_out] = -np.inf  # exp gives 0: no probability, and no gradient
    if caption_weights is None:
        weights = xp.full(scores.shape[0], 1 / N, dtype=scores.dtype)
    else:  # row t*N + n of h_flat is caption n's step t
        weights = xp.tile(xp.asarray(caption_weights, dtype=scores.dtype) / N, T)[counted]
    loss, dscores = softmax_cross_entropy(scores, ids_out.ravel()[counted], weights, overwrite_x=True)
    return loss, (dscores, vocab_cache, drop_cache, counted, h.shape)


def vocab_loss_backward(cache: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of :func:`vocab_loss_forward`'s loss: dh (T, N, H), zero where no target counts; dW_vocab, db_vocab."""
    dscores, vocab_cache, drop_cache, counted, shape = cache
    dh_counted, dW_vocab, db_vocab = affine_backward(dscores, vocab_cache)  # (M, H)
    dh_counted = dropout_backward(dh_counted, drop_cache)
    if isinstance(counted, slice):
        return dh_counted.reshape(shape), dW_vocab, db_vocab
    dh = array_module(dh_counted).zeros(shape, dtype=dh_counted.dtype)
    dh.reshape(-1, shape[2])[counted] = dh_counted
    return dh, dW_vocab, db_vocab


def _dropout(x: np.ndarray, p: float, draws: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`~rnncap.nn.dropout_forward` with the draws given, or nothing dropped without them (validation)."""
    return (x, None) if draws is None else dropout_forward(x, p, draws)
