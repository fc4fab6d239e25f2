"""Inverted dropout: zero each unit with probability p while training and scale the survivors by 1 / (1 - p), so
that nothing changes at test time (Srivastava et al. 2014; placed as in Zaremba et al. 2014: on the non-recurrent
connections only).

:class:`DropoutDraws` hands a model the uniform draws of its masks caption by caption, drawn for a whole global
batch: data-parallel training (each process computing one block of the batch's captions) then drops exactly the
units a single process would drop for the same batch.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import device_of, to_device


class DropoutDraws:
    """Uniform draws in [0, 1) for the dropout masks of a global batch of ``total`` captions, of which this process
    keeps the block ``rows``.

    Each call to :meth:`per_caption` draws the whole batch's block of uniforms from ``rng`` and returns this
    process's rows, so that every process's generator advances alike (they stay in step, as the shuffling needs)
    and caption ``i`` of the global batch gets the same draws whichever process computes it.
    """

    def __init__(self, rng: np.random.Generator, rows: slice = slice(None), total: int | None = None) -> None:
        """Args:
        rng: the generator (the caller owns it, so that a run is reproducible and resumable).
        rows: this process's captions of the global batch, a contiguous block ``start:stop``.
        total: captions in the global batch; None: the batch is this process's alone (``rows`` is all of it).
        """
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        if rows.step not in (None, 1):
            raise ValueError(f"rows must be a contiguous block of the global batch, got step {rows.step}")
        self.rng, self.rows, self.total = rng, rows, total

    def per_caption(self, count: int, shape: tuple[int, ...]) -> np.ndarray:
        """(count, *shape) float32 uniforms: this process's ``count`` captions' draws, in the batch's order.

        Raises:
            ValueError: ``count`` is not the number of ``rows`` of the global batch.
        """
        total = count if self.total is None else self.total
        start, stop, _ = self.rows.indices(total)
        if stop - start != count:
            raise ValueError(
                f"this process's block {start}:{stop} of a global batch of {total} captions holds {stop - start} "
                f"captions, but the minibatch has {count}"
            )
        # float32 draws: half the work of float64, same statistics.
        return self.rng.random((total, *shape), dtype=np.float32)[start:stop]


def dropout_draws(rng: np.random.Generator | DropoutDraws | None) -> DropoutDraws | None:
    """What a model's ``loss(..., rng=)`` takes, as draws: a generator draws for this minibatch alone."""
    return rng if rng is None or isinstance(rng, DropoutDraws) else DropoutDraws(rng)


def dropout_forward(
    x: np.ndarray, p: float, rng: np.random.Generator | np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Drop units of ``x`` at random.

    Args:
        x: any shape.
        p: probability of dropping a unit, in [0, 1).
        rng: the generator of the mask (the caller owns it, so that a run is reproducible and resumable), or the
            uniform draws in [0, 1) themselves, shaped like ``x`` (as :class:`DropoutDraws` gives a model). The
            generator draws on the host and its draws move to ``x``'s device, so that a seeded run drops the same
            units on either device.

    Returns:
        out: like ``x``; cache: the scaled keep-mask, in ``x``'s dtype (None when ``p`` is 0).
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if p == 0:
        return x, None
    if isinstance(rng, np.random.Generator):
        uniform = rng.random(x.shape, dtype=np.float32)  # float32 draws: half the work of float64, same statistics
    elif rng.shape == x.shape:
        uniform = rng
    else:
        raise ValueError(f"dropout draws of shape {rng.shape} for units of shape {x.shape}")
    uniform = to_device(uniform, device_of(x))
    scaled = (uniform >= p).astype(x.dtype)
    scaled *= 1 / (1 - p)
    return x * scaled, scaled


def dropout_backward(dout: np.ndarray, cache: np.ndarray | None) -> np.ndarray:
    """Backward pass of :func:`dropout_forward`: the same mask and scale."""
    return dout if cache is None else dout * cache
