"""Elementwise activations, in place, so that the recurrent loops allocate nothing per step."""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """Replace ``x`` with ``1 / (1 + exp(-x))``, in place, and return it.

    Uses ``sigmoid(x) = (1 + tanh(x / 2)) / 2``: stable for any magnitude (no ``exp`` overflow), one fast ufunc,
    and exact to a rounding error of the result's scale 1 (values below ~1e-8 lose relative precision, which a
    gate never notices).
    """
    x *= 0.5
    array_module(x).tanh(x, out=x)
    x += 1
    x *= 0.5
    return x
