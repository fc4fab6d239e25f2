"""Inverted dropout: zero each unit with probability p while training and scale the survivors by 1 / (1 - p), so
that nothing changes at test time (Srivastava et al. 2014; placed as in Zaremba et al. 2014: on the non-recurrent
connections only)."""

from __future__ import annotations

import numpy as np


def dropout_forward(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop units of ``x`` at random.

    Args:
        x: any shape.
        p: probability of dropping a unit, in [0, 1).
        rng: the generator of the mask (the caller owns it, so that a run is reproducible and resumable).

    Returns:
        out: like ``x``; cache: the scaled keep-mask, in ``x``'s dtype (None when ``p`` is 0).
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if p == 0:
        return x, None
    keep = rng.random(x.shape, dtype=np.float32) >= p  # float32 draws: half the work of float64, same statistics
    scaled = keep.astype(x.dtype)
    scaled *= 1 / (1 - p)
    return x * scaled, scaled


def dropout_backward(dout: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """Backward pass of :func:`dropout_forward`: the same mask and scale."""
    return dout if cache is None else dout * cache
