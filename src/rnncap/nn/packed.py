"""Packed sequences: a batch sorted by length, so that at step t only its first ``n_t`` rows are still running.

A caption batch padded to its longest caption wastes the recurrence's work on padding: on real captions about a
third of the (step, row) pairs. Sorted by length (longest first), the rows still active at step t are the first
``n_t``, with ``n_0 >= n_1 >= ...``: the recurrence then computes ``x[:n_t, t]``, ``h[:n_t]`` only, and the
backward pass likewise, so a row's gradient stops at its own length (``torch.nn.utils.rnn.pack_padded_sequence``
does the same).

``active`` is that (T,) vector of counts (:func:`active_from_lengths` makes it from sorted lengths). The packed
layout puts the active rows of every step one after another: step t's rows are ``packed[offsets[t]:offsets[t + 1]]``.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module, to_numpy


def active_from_lengths(lengths: np.ndarray, T: int) -> np.ndarray:
    """(N,) lengths sorted in descending order -> (T,) counts ``n_t = #{n : lengths[n] > t}``."""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or np.any(np.diff(lengths) > 0):
        raise ValueError(f"lengths must be a 1-d array sorted in descending order, got {lengths.tolist()}")
    return (lengths[None, :] > np.arange(T)[:, None]).sum(axis=1)


def sort_by_length(lengths: np.ndarray) -> np.ndarray:
    """The stable permutation that sorts (N,) lengths in descending order (ties keep their order)."""
    return np.argsort(-np.asarray(lengths), kind="stable")


def check_active(active: np.ndarray, N: int, T: int) -> np.ndarray:
    """Validate ``active`` for a batch of N rows and T steps; returns it as an int64 array."""
    counts = np.asarray(to_numpy(active))  # host counts: they steer the time loop
    if counts.shape != (T,) or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"active must be a ({T},) integer array of active rows per step, got {counts!r}")
    if T and (counts.min() < 0 or counts.max() > N or np.any(np.diff(counts) > 0)):
        raise ValueError(f"active must be non-increasing counts between 0 and N={N}, got {counts.tolist()}")
    return counts.astype(np.int64)


def offsets_of(counts: np.ndarray) -> np.ndarray:
    """(T,) counts -> (T + 1,) offsets of every step's rows in the packed layout."""
    return np.concatenate([[0], np.cumsum(counts)])


def pack(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Time-major (T, N, ...) -> packed (M, ...), M = sum(counts): the active rows of every step in order."""
    return array_module(x).concatenate([x[t, :n] for t, n in enumerate(counts)], axis=0)


def unpack(packed: np.ndarray, counts: np.ndarray, N: int) -> np.ndarray:
    """Packed (M, ...) -> time-major (T, N, ...), zero where a row is not active."""
    out = array_module(packed).zeros((len(counts), N, *packed.shape[1:]), dtype=packed.dtype)
    offsets = offsets_of(counts)
    for t, n in enumerate(counts):
        out[t, :n] = packed[offsets[t] : offsets[t + 1]]
    return out
