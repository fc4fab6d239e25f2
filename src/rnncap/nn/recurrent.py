"""The recurrence shared by every cell type: input projection, time loop, backpropagation through time.

A cell (vanilla RNN, LSTM, GRU) is described by a :class:`Cell`: how many gate blocks it has and two *core*
functions that do the per-step work after the input projection (:class:`CoreForward`, :class:`CoreBackward`).
Everything else is written once, here:

- the input projection ``x @ Wx + b`` of all N*T inputs as one matrix product before the time loop;
- the weight gradients ``dWx``, ``dWh``, ``db`` and the input gradient ``dx`` as one matrix product each over all
  time steps after the backward loop (only ``dh_prev @ Wh.T`` must stay inside the loop);
- per-step buffers preallocated for the whole sequence, so that the loops do elementwise work in place.

The backward passes return named tuples in the order of the forward inputs: :class:`StepGrads` from
:func:`step_backward` (and the LSTM's step), :class:`HiddenStepGrads` from the RNN's and the GRU's step (no
``dprev_c``), :class:`SequenceGrads` from :func:`sequence_backward`. They unpack like CS231n's tuples
(``dx, dh0, dWx, dWh, db = lstm_backward(dh, cache)``) and can be read by name (``grads.dWx``).

Plain, unoptimised versions of the cells, the oracle the tests hold these against, are in
:mod:`rnncap.nn.reference`.

Reference: Stanford CS231n assignment 3, ``rnn_layers.py`` (names, shapes and the forward/backward pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from rnncap.backend import array_module
from rnncap.nn.packed import check_active, offsets_of, pack, unpack

CoreCache = tuple[np.ndarray, ...]  # what a core keeps of one step for its backward pass
StepCache = tuple[np.ndarray, np.ndarray, np.ndarray, CoreCache]  # x, prev_h, Wx, the core's cache
PaddedCache = tuple[np.ndarray, np.ndarray, np.ndarray, list[CoreCache]]  # x_flat, Wx, hs, the cores' caches


class PackedCache(NamedTuple):
    """What a packed :func:`sequence_forward` keeps (see :mod:`rnncap.nn.packed`); M = sum(counts) rows."""

    x_packed: np.ndarray  # (M, D) the active inputs
    Wx: np.ndarray  # (D, kH)
    h_in: np.ndarray  # (M, H) the state every active row reads
    counts: np.ndarray  # (T,) active rows per step
    step_caches: list[CoreCache]


SequenceCache = PaddedCache | PackedCache


class CoreForward(Protocol):
    """One step of a cell after the input projection (k gate blocks of width H).

    ``a`` (N, kH) holds ``x @ Wx + b`` for this step; the core may overwrite it (it stores gate activations there).
    ``prev_h`` (N, H); ``prev_c`` (N, H), or None for cells without a cell state; ``Wh`` (H, kH). ``next_h`` (N, H)
    is written into ``out_h``. Returns ``next_c`` (None without a cell state) and the step's cache.
    """

    def __call__(
        self, a: np.ndarray, prev_h: np.ndarray, prev_c: np.ndarray | None, Wh: np.ndarray, out_h: np.ndarray, /
    ) -> tuple[np.ndarray | None, CoreCache]: ...


class CoreBackward(Protocol):
    """Backward of :class:`CoreForward` for one step.

    Writes the gradient of the pre-activation input part into ``da`` (N, kH) and of the hidden part ``prev_h @ Wh``
    into ``dah`` (N, kH); for cells where both are equal (RNN, LSTM) the caller passes the same array. ``dnext_c``
    is None for cells without a cell state. Returns ``dprev_h`` (N, H) and ``dprev_c`` (N, H) or None.
    """

    def __call__(
        self, dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: CoreCache, da: np.ndarray, dah: np.ndarray, /
    ) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass(frozen=True, kw_only=True)
class Cell:
    """A recurrent cell type, as seen by the shared recurrence."""

    name: str
    gates: int  # k: Wx is (D, k*H), Wh is (H, k*H), b is (k*H,)
    has_cell_state: bool  # True for the LSTM: it carries c beside h
    separate_hidden_grad: bool  # True when d(prev_h @ Wh) differs from d(x @ Wx) (the GRU's reset gate)
    core_forward: CoreForward
    core_backward: CoreBackward


class StepGrads(NamedTuple):
    """Gradients of :func:`step_backward`, in the order of :func:`step_forward`'s inputs."""

    dx: np.ndarray  # (N, D)
    dprev_h: np.ndarray  # (N, H)
    dprev_c: np.ndarray | None  # (N, H); None for cells without a cell state
    dWx: np.ndarray  # (D, kH)
    dWh: np.ndarray  # (H, kH)
    db: np.ndarray  # (kH,)


class HiddenStepGrads(NamedTuple):
    """Gradients of one step of a cell whose whole state is h (``rnn_step_backward``, ``gru_step_backward``)."""

    dx: np.ndarray  # (N, D)
    dprev_h: np.ndarray  # (N, H)
    dWx: np.ndarray  # (D, kH)
    dWh: np.ndarray  # (H, kH)
    db: np.ndarray  # (kH,)


class SequenceGrads(NamedTuple):
    """Gradients of :func:`sequence_backward` (and ``rnn_backward``, ``lstm_backward``, ``gru_backward``)."""

    dx: np.ndarray  # (N, T, D)
    dh0: np.ndarray  # (N, H)
    dWx: np.ndarray  # (D, kH)
    dWh: np.ndarray  # (H, kH)
    db: np.ndarray  # (kH,)


def step_forward(
    cell: Cell,
    x: np.ndarray,
    prev_h: np.ndarray,
    prev_c: np.ndarray | None,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None, StepCache]:
    """One time step of ``cell``.

    Args:
        x: (N, D) inputs; prev_h: (N, H); prev_c: (N, H) or None; Wx: (D, kH); Wh: (H, kH); b: (kH,).

    Returns:
        next_h: (N, H); next_c: (N, H) or None; cache for :func:`step_backward`.
    """
    a = x @ Wx  # (N, kH)
    a += b
    next_h = array_module(a).empty_like(prev_h)
    next_c, core_cache = cell.core_forward(a, prev_h, prev_c, Wh, next_h)
    return next_h, next_c, (x, prev_h, Wx, core_cache)


def step_backward(cell: Cell, dnext_h: np.ndarray, dnext_c: np.ndarray | None, cache: StepCache) -> StepGrads:
    """Backward pass of :func:`step_forward`: dnext_h (N, H) and dnext_c (N, H) or None -> :class:`StepGrads`."""
    x, prev_h, Wx, core_cache = cache
    xp = array_module(dnext_h)
    da = xp.empty((x.shape[0], Wx.shape[1]), dtype=dnext_h.dtype)
    dah = xp.empty_like(da) if cell.separate_hidden_grad else da
    dprev_h, dprev_c = cell.core_backward(dnext_h, dnext_c, core_cache, da, dah)
    return StepGrads(da @ Wx.T, dprev_h, dprev_c, x.T @ da, prev_h.T @ dah, da.sum(axis=0))


def sequence_forward(
    cell: Cell,
    x: np.ndarray,
    h0: np.ndarray,
    Wx: np.ndarray,
    Wh: np.ndarray,
    b: np.ndarray,
    active: np.ndarray | None = None,
) -> tuple[np.ndarray, SequenceCache]:
    """Run ``cell`` over a whole sequence; the LSTM's initial cell state is zero.

    Internally the sequence is time-major, (T, N, ...), so that every step reads and writes contiguous memory.
    ``x`` may be a transposed view of a time-major array (``x_tm.transpose(1, 0, 2)``): then nothing is copied,
    and the returned ``h`` is such a view too.

    Args:
        x: (N, T, D) inputs; h0: (N, H) initial hidden state; Wx: (D, kH); Wh: (H, kH); b: (kH,).
        active: (T,) non-increasing counts: step t runs rows ``[:active[t]]`` only (a batch sorted by length,
            see :mod:`rnncap.nn.packed`); None: every row at every step.

    Returns:
        h: (N, T, H) hidden states of all time steps (zero where a row is not active); cache for
        :func:`sequence_backward`.
    """
    N, T, D = x.shape
    if active is not None:
        return _packed_forward(cell, x, h0, Wx, Wh, b, check_active(active, N, T))
    H = h0.shape[1]
    xp = array_module(x, h0)
    x_flat = x.transpose(1, 0, 2).reshape(T * N, D)  # (T*N, D), a view for time-major input
    a = x_flat @ Wx  # (T*N, kH): the input part of every step in one GEMM
    a += b
    a = a.reshape(T, N, -1)  # the core turns each step's slice into gate activations
    hs = xp.empty((T + 1, N, H), dtype=a.dtype)  # hs[t] is the state step t reads, hs[t + 1] the one it writes
    hs[0] = h0
    prev_c = xp.zeros_like(hs[0]) if cell.has_cell_state else None
    step_caches = []
    for t in range(T):
        prev_c, step_cache = cell.core_forward(a[t], hs[t], prev_c, Wh, hs[t + 1])
        step_caches.append(step_cache)
    return hs[1:].transpose(1, 0, 2), (x_flat, Wx, hs, step_caches)


def sequence_backward(cell: Cell, dh: np.ndarray, cache: SequenceCache) -> SequenceGrads:
    """Backpropagation through time for :func:`sequence_forward`.

    Args:
        dh: (N, T, H) upstream gradient of every hidden state (best a transposed view of a time-major array).
        cache: from :func:`sequence_forward`.

    Returns:
        :class:`SequenceGrads`: dx (N, T, D) (a transposed view of a time-major array), dh0 (N, H), dWx (D, kH),
        dWh (H, kH), db (kH,).
    """
    if isinstance(cache, PackedCache):
        return _packed_backward(cell, dh, cache, N=dh.shape[0])
    x_flat, Wx, hs, step_caches = cache
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    D, kH = Wx.shape
    xp = array_module(dh)
    dh = dh.transpose(1, 0, 2)  # (T, N, H)
    da = xp.empty((T, N, kH), dtype=dh.dtype)
    dah = xp.empty_like(da) if cell.separate_hidden_grad else da
    dprev_h = xp.zeros((N, H), dtype=dh.dtype)
    dprev_c = xp.zeros((N, H), dtype=dh.dtype) if cell.has_cell_state else None
    for t in reversed(range(T)):
        dprev_h += dh[t]  # gradient reaching h_t: from the output at t and from step t + 1
        dprev_h, dprev_c = cell.core_backward(dprev_h, dprev_c, step_caches[t], da[t], dah[t])

    da_flat = da.reshape(T * N, kH)
    dx = (da_flat @ Wx.T).reshape(T, N, D).transpose(1, 0, 2)
    dWx = x_flat.T @ da_flat
    dWh = hs[:-1].reshape(T * N, H).T @ dah.reshape(T * N, kH)  # every step's input state, no copy
    return SequenceGrads(dx, dprev_h, dWx, dWh, da_flat.sum(axis=0))


def _packed_forward(
    cell: Cell, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, PackedCache]:
    """:func:`sequence_forward` on the active rows only: x (N, T, D) -> h (N, T, H), zero where not active."""
    N, H = h0.shape
    xp = array_module(x, h0)
    offsets = offsets_of(counts)
    x_packed = pack(x.transpose(1, 0, 2), counts)  # (M, D)
    a = x_packed @ Wx  # (M, kH): the input part of every active step in one GEMM
    a += b
    h_in = xp.empty((x_packed.shape[0], H), dtype=a.dtype)
    h_out = xp.empty_like(h_in)
    prev_h, prev_c = h0, (xp.zeros_like(h0) if cell.has_cell_state else None)
    step_caches = []
    for t, n in enumerate(counts):
        rows = slice(offsets[t], offsets[t + 1])
        h_in[rows] = prev_h[:n]  # the longest rows come first: the active ones are a prefix of the last step's
        prev_c, step_cache = cell.core_forward(
            a[rows], h_in[rows], None if prev_c is None else prev_c[:n], Wh, h_out[rows]
        )
        step_caches.append(step_cache)
        prev_h = h_out[rows]
    h = unpack(h_out, counts, N)  # (T, N, H)
    return h.transpose(1, 0, 2), PackedCache(x_packed, Wx, h_in, counts, step_caches)


def _packed_backward(cell: Cell, dh: np.ndarray, cache: PackedCache, N: int) -> SequenceGrads:
    """:func:`sequence_backward` for a packed forward; dh where a row is not active is ignored."""
    x_packed, Wx, h_in, counts, step_caches = cache
    H, kH = h_in.shape[1], Wx.shape[1]
    xp = array_module(dh)
    offsets = offsets_of(counts)
    dh_packed = pack(dh.transpose(1, 0, 2), counts)  # (M, H)
    da = xp.empty((x_packed.shape[0], kH), dtype=dh.dtype)
    dah = xp.empty_like(da) if cell.separate_hidden_grad else da
    dprev_h = xp.zeros((N, H), dtype=dh.dtype)  # rows past their length keep 0 until their last step
    dprev_c = xp.zeros((N, H), dtype=dh.dtype) if cell.has_cell_state else None
    for t in reversed(range(len(counts))):
        n, rows = counts[t], slice(offsets[t], offsets[t + 1])
        dnext_h = dprev_h[:n]
        dnext_h += dh_packed[rows]
        dnext_c = None if dprev_c is None else dprev_c[:n]
        dprev_h[:n], new_c = cell.core_backward(dnext_h, dnext_c, step_caches[t], da[rows], dah[rows])
        if dprev_c is not None:
            dprev_c[:n] = new_c
    dx = unpack(da @ Wx.T, counts, N).transpose(1, 0, 2)
    return SequenceGrads(dx, dprev_h, x_packed.T @ da, h_in.T @ dah, da.sum(axis=0))
