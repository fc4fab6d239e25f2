"""Argument checks that the models' and the trainer's configs share."""

from __future__ import annotations

from typing import Any

import numpy as np


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), not a bool: what a float setting may be given as."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
