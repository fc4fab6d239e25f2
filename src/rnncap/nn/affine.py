"""Affine layers: one vector per example, and one vector per example and time step."""

from __future__ import annotations

import numpy as np


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Fully connected layer ``out = x @ w + b``.

    Args:
        x: (N, D) inputs.
        w: (D, M) weights.
        b: (M,) biases.

    Returns:
        out: (N, M).
        cache: what ``affine_backward`` needs.
    """
    out = x @ w
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of ``affine_forward``.

    Args:
        dout: (N, M) upstream gradient.
        cache: from ``affine_forward``.

    Returns:
        dx (N, D), dw (D, M), db (M,).
    """
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def temporal_affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, tuple]:
    """The same affine map applied at every time step, as one matrix product over all N*T vectors.

    Args:
        x: (N, T, D) inputs.
        w: (D, M) weights.
        b: (M,) biases.

    Returns:
        out: (N, T, M).
        cache: what ``temporal_affine_backward`` needs.
    """
    N, T, D = x.shape
    out, _ = affine_forward(x.reshape(N * T, D), w, b)  # (N*T, M)
    return out.reshape(N, T, -1), (x, w)


def temporal_affine_backward(dout: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of ``temporal_affine_forward``.

    Args:
        dout: (N, T, M) upstream gradient.
        cache: from ``temporal_affine_forward``.

    Returns:
        dx (N, T, D), dw (D, M), db (M,).
    """
    x, w = cache
    N, T, D = x.shape
    dx, dw, db = affine_backward(dout.reshape(N * T, -1), (x.reshape(N * T, D), w))
    return dx.reshape(N, T, D), dw, db
