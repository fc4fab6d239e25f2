"""Softmax cross-entropy over a vocabulary at every time step, with a mask for padding."""

from __future__ import annotations

import numpy as np


def temporal_softmax_loss(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, np.ndarray]:
    """Masked softmax cross-entropy, summed over time steps and averaged over the minibatch.

    ``loss = -sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]] / N``, computed from max-shifted scores so that
    large scores neither overflow nor lose precision; the gradient reuses the softmax buffer in place.

    Args:
        x: (N, T, V) unnormalised scores.
        y: (N, T) integer targets in [0, V).
        mask: (N, T) booleans, True where the target counts.

    Returns:
        loss: the scalar loss (a Python float).
        dx: (N, T, V) gradient of the loss with respect to ``x``, in ``x``'s dtype.
    """
    N, T, V = x.shape
    rows = np.arange(N * T)
    targets = y.ravel()
    weights = mask.ravel().astype(x.dtype) / x.dtype.type(N)  # (N*T,)

    probs = x.reshape(N * T, V) - x.reshape(N * T, V).max(axis=1, keepdims=True)  # (N*T, V), max is 0
    target_scores = probs[rows, targets]  # shifted score of the target, before exp overwrites it
    np.exp(probs, out=probs)
    sums = probs.sum(axis=1)  # (N*T,), each >= 1 because the max entry is exp(0)
    log_likelihood = target_scores - np.log(sums)
    loss = -float(np.dot(weights.astype(np.float64), log_likelihood.astype(np.float64)))

    probs /= sums[:, None]
    probs[rows, targets] -= 1
    probs *= weights[:, None]
    return loss, probs.reshape(N, T, V)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, V) scores, stable for any magnitude: (N, V) -> (N, V)."""
    shifted = x - x.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted
