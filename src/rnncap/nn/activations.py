"""Elementwise activations, in place, so that the recurrent loops allocate nothing per step."""

from __future__ import annotations

import numpy as np


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """Replace ``x`` with ``1 / (1 + exp(-x))``, in place, and return it.

    Uses ``sigmoid(x) = (1 + tanh(x / 2)) / 2``: stable for any magnitude (no ``exp`` overflow) and as accurate
    as the logistic form.
    """
    x *= 0.5
    np.tanh(x, out=x)
    x += 1
    x *= 0.5
    return x
