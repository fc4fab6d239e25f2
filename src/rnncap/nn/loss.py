"""Softmax cross-entropy over a vocabulary, for a set of rows or for every time step with a padding mask."""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module


def softmax_cross_entropy(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, overwrite_x: bool = False
) -> tuple[float, np.ndarray]:
    """Weighted softmax cross-entropy of M rows: ``loss = -sum_m weights[m] * log softmax(x[m])[y[m]]``.

    Computed from max-shifted scores, so that large scores neither overflow nor lose precision; the gradient
    reuses the softmax buffer in place (one (M, V) allocation in all, none with ``overwrite_x``).

    Args:
        x: (M, V) unnormalised scores.
        y: (M,) integer targets in [0, V).
        weights: (M,) weight of each row (0 drops a row).
        overwrite_x: turn ``x`` itself into the gradient, for a caller that no longer needs the scores
            (the largest array of a training step).

    Returns:
        loss: the scalar loss (a Python float, summed in float64).
        dx: (M, V) gradient of the loss with respect to ``x``, in ``x``'s dtype.
    """
    xp = array_module(x, y, weights)
    rows = xp.arange(x.shape[0])
    weights = weights.astype(x.dtype, copy=False)
    row_max = x.max(axis=1, keepdims=True)
    probs = xp.subtract(x, row_max, out=x if overwrite_x else None)  # (M, V); each row's max is now 0
    target_scores = probs[rows, y]  # shifted score of each target, before exp overwrites it
    xp.exp(probs, out=probs)
    sums = probs.sum(axis=1)  # (M,), each >= 1 because the max entry is exp(0)
    log_likelihood = target_scores - xp.log(sums)
    loss = -float(xp.dot(weights.astype(np.float64), log_likelihood.astype(np.float64)))  # (a GPU syncs here)

    probs /= sums[:, None]
    probs[rows, y] -= 1
    probs *= weights[:, None]
    return loss, probs


def temporal_softmax_loss(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    """Masked softmax cross-entropy, summed over time steps and averaged over the minibatch (CS231n's loss).

    ``loss = -sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]] / N``.

    Args:
        x: (N, T, V) unnormalised scores.
        y: (N, T) integer targets in [0, V).
        mask: (N, T) booleans, True where the target counts.

    Returns:
        loss: the scalar loss (a Python float).
        dx: (N, T, V) gradient of the loss with respect to ``x``, in ``x``'s dtype.
    """
    N, T, V = x.shape
    weights = mask.ravel().astype(x.dtype) / x.dtype.type(N)  # (N*T,)
    loss, dx = softmax_cross_entropy(x.reshape(N * T, V), y.ravel(), weights)
    return loss, dx.reshape(N, T, V)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, V) scores, stable for any magnitude: (N, V) -> (N, V)."""
    xp = array_module(x)
    shifted = x - x.max(axis=1, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    return shifted
