"""Word embedding: a lookup table from token ids to vectors."""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module


def word_embedding_forward(x: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Look up the vector of every token.

    Args:
        x: (N, T) integer token ids in [0, V).
        W: (V, D) one vector per vocabulary word.

    Returns:
        out: (N, T, D) with ``out[n, t] = W[x[n, t]]``.
        cache: what ``word_embedding_backward`` needs.
    """
    return W[x], (x, W.shape)


def word_embedding_backward(dout: np.ndarray, cache: tuple) -> np.ndarray:
    """Backward pass of ``word_embedding_forward``: sum the gradients of every occurrence of a word.

    ``np.add.at`` does this one element at a time; sorting the ids once and summing each run of equal ids
    with ``np.add.reduceat`` keeps the work in vectorised NumPy.

    Args:
        dout: (N, T, D) upstream gradient.
        cache: from ``word_embedding_forward``.

    Returns:
        dW: (V, D), zero for words that do not occur.
    """
    x, (V, D) = cache
    xp = array_module(x, dout)
    ids = x.ravel()
    order = xp.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    run_starts = xp.flatnonzero(xp.concatenate((xp.ones(1, dtype=bool), sorted_ids[1:] != sorted_ids[:-1])))
    dW = xp.zeros((V, D), dtype=dout.dtype)
    # A sum per run, in a fixed order: deterministic on a GPU too, unlike atomic scatter-adds.
    dW[sorted_ids[run_starts]] = xp.add.reduceat(dout.reshape(-1, D)[order], run_starts, axis=0)
    return dW
