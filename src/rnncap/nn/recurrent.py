"""The recurrence shared by every cell type: input projection, time loop, backpropagation through time.

A cell (vanilla RNN, LSTM, GRU) is described by a :class:`Cell`: how many gate blocks it has and two *core*
functions that do the per-step work after the input projection. Everything else is written once, here:

- the input projection ``x @ Wx + b`` of all N*T inputs as one matrix product before the time loop;
- the weight gradients ``dWx``, ``dWh``, ``db`` and the input gradient ``dx`` as one matrix product each over all
  time steps after the backward loop (only ``dh_prev @ Wh.T`` must stay inside the loop);
- per-step buffers preallocated for the whole sequence, so that the loops do elementwise work in place.

Core contract (k gate blocks of width H; ``prev_c``/``next_c`` are ``None`` for cells without a cell state):

``core_forward(a, prev_h, prev_c, Wh, out_h) -> (next_c, cache)``
    ``a`` (N, kH) holds ``x @ Wx + b`` for this step; the core may overwrite it (it stores gate activations
    there). ``next_h`` (N, H) is written into ``out_h``.
``core_backward(dnext_h, dnext_c, cache, da, dah) -> (dprev_h, dprev_c)``
    Writes the gradient of the pre-activation input part into ``da`` (N, kH) and of the hidden part
    ``prev_h @ Wh`` into ``dah``. For cells where both are equal (RNN, LSTM) the caller passes the same array.

Reference: Stanford CS231n assignment 3, ``rnn_layers.py`` (names, shapes and the forward/backward pattern).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cell:
    """A recurrent cell type, as seen by the shared recurrence."""

    name: str
    gates: int  # k: Wx is (D, k*H), Wh is (H, k*H), b is (k*H,)
    has_cell_state: bool  # True for the LSTM: it carries c beside h
    separate_hidden_grad: bool  # True when d(prev_h @ Wh) differs from d(x @ Wx) (the GRU's reset gate)
    core_forward: Callable
    core_backward: Callable


def step_forward(
    cell: Cell,
    x: np.ndarray,
    prev_h: np.ndarray,
    prev_c: np.ndarray | None,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, tuple]:
    """One time step of ``cell``.

    Args:
        x: (N, D) inputs; prev_h: (N, H); prev_c: (N, H) or None; Wx: (D, kH); Wh: (H, kH); b: (kH,).

    Returns:
        next_h: (N, H); next_c: (N, H) or None; cache for :func:`step_backward`.
    """
    a = x @ Wx  # (N, kH)
    a += b
    next_h = np.empty_like(prev_h)
    next_c, core_cache = cell.core_forward(a, prev_h, prev_c, Wh, next_h)
    return next_h, next_c, (x, prev_h, Wx, core_cache)


def step_backward(
    cell: Cell, dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
    """Backward pass of :func:`step_forward`.

    Returns:
        dx (N, D), dprev_h (N, H), dprev_c (N, H) or None, dWx (D, kH), dWh (H, kH), db (kH,).
    """
    x, prev_h, Wx, core_cache = cache
    da = np.empty((x.shape[0], Wx.shape[1]), dtype=dnext_h.dtype)
    dah = np.empty_like(da) if cell.separate_hidden_grad else da
    dprev_h, dprev_c = cell.core_backward(dnext_h, dnext_c, core_cache, da, dah)
    return da @ Wx.T, dprev_h, dprev_c, x.T @ da, prev_h.T @ dah, da.sum(axis=0)


def sequence_forward(
    cell: Cell, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, tuple]:
    """Run ``cell`` over a whole sequence; the LSTM's initial cell state is zero.

    Internally the sequence is time-major, (T, N, ...), so that every step reads and writes contiguous memory.
    ``x`` may be a transposed view of a time-major array (``x_tm.transpose(1, 0, 2)``): then nothing is copied,
    and the returned ``h`` is such a view too.

    Args:
        x: (N, T, D) inputs; h0: (N, H) initial hidden state; Wx: (D, kH); Wh: (H, kH); b: (kH,).

    Returns:
        h: (N, T, H) hidden states of all time steps; cache for :func:`sequence_backward`.
    """
    N, T, D = x.shape
    H = h0.shape[1]
    x_flat = x.transpose(1, 0, 2).reshape(T * N, D)  # (T*N, D), a view for time-major input
    a = x_flat @ Wx  # (T*N, kH): the input part of every step in one GEMM
    a += b
    a = a.reshape(T, N, -1)  # the core turns each step's slice into gate activations
    hs = np.empty((T + 1, N, H), dtype=a.dtype)  # hs[t] is the state step t reads, hs[t + 1] the one it writes
    hs[0] = h0
    prev_c = np.zeros_like(hs[0]) if cell.has_cell_state else None
    step_caches = []
    for t in range(T):
        prev_c, step_cache = cell.core_forward(a[t], hs[t], prev_c, Wh, hs[t + 1])
        step_caches.append(step_cache)
    return hs[1:].transpose(1, 0, 2), (x_flat, Wx, hs, step_caches)


def sequence_backward(
    cell: Cell, dh: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backpropagation through time for :func:`sequence_forward`.

    Args:
        dh: (N, T, H) upstream gradient of every hidden state (best a transposed view of a time-major array).
        cache: from :func:`sequence_forward`.

    Returns:
        dx (N, T, D) (a transposed view of a time-major array), dh0 (N, H), dWx (D, kH), dWh (H, kH), db (kH,).
    """
    x_flat, Wx, hs, step_caches = cache
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    D, kH = Wx.shape
    dh = dh.transpose(1, 0, 2)  # (T, N, H)
    da = np.empty((T, N, kH), dtype=dh.dtype)
    dah = np.empty_like(da) if cell.separate_hidden_grad else da
    dprev_h = np.zeros((N, H), dtype=dh.dtype)
    dprev_c = np.zeros((N, H), dtype=dh.dtype) if cell.has_cell_state else None
    for t in reversed(range(T)):
        dprev_h += dh[t]  # gradient reaching h_t: from the output at t and from step t + 1
        dprev_h, dprev_c = cell.core_backward(dprev_h, dprev_c, step_caches[t], da[t], dah[t])

    da_flat = da.reshape(T * N, kH)
    dx = (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2)
    dWx = x_flat.T @ da_flat
    dWh = hs[:-1].reshape(T * N, H).T @ dah.reshape(T * N, kH)  # every step's input state, no copy
    return dx, dprev_h, dWx, dWh, da_flat.sum(axis=0)
