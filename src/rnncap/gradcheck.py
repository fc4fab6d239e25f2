"""Numeric gradients by centred differences, to check any layer or model against its hand-written backward.

Use float64 inputs: in float32 the rounding error of the differences swamps the comparison. Inputs may live on
either device (:mod:`rnncap.backend`): the nudges and the layer run there, the errors are plain floats.

Example, for a layer::

    errors = check_layer(lstm_forward, lstm_backward, [x, h0, Wx, Wh, b])   # one relative error per input

and for a model::

    errors = check_model(model, features, captions)                         # one per parameter name
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rnncap.backend import array_module, device_of, is_array, to_device, to_numpy
from rnncap.models.base import CaptionModel


def rel_error(x: np.ndarray, y: np.ndarray) -> float:
    """Largest elementwise relative error ``|x - y| / max(1e-8, |x| + |y|)`` (CS231n's measure), on the host."""
    x, y = np.asarray(to_numpy(x), dtype=np.float64), np.asarray(to_numpy(y), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"rel_error: shapes differ, {x.shape} vs {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Gradient of the scalar ``f()`` with respect to the array ``x``, which ``f`` reads.

    Each entry of ``x`` is nudged in place and restored, so ``f`` must read ``x`` on every call. The five-point
    stencil ``(f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h`` has truncation error O(h^4): with h = 1e-3 both
    it and the rounding error stay near 1e-12, so a correct backward agrees to about 1e-9 relative or better.
    """
    _require_float64(x)
    grad = array_module(x).zeros_like(x)
    for idx in np.ndindex(x.shape):  # one entry at a time is what a numeric gradient is
        original = x[idx]
        values = []
        for step in (-2 * h, -h, h, 2 * h):
            x[idx] = original + step
            values.append(f())
        x[idx] = original
        # Differences first: a value that does not move gives exactly zero, not rounding noise.
        grad[idx] = (8 * (values[2] - values[1]) - (values[3] - values[0])) / (12 * h)
    return grad


def numerical_gradient_array(
    f: Callable[[], np.ndarray], x: np.ndarray, dout: np.ndarray, h: float = 1e-3
) -> np.ndarray:
    """Gradient of ``sum(f() * dout)`` with respect to ``x``, for array-valued ``f`` (as :func:`numerical_gradient`)."""
    return numerical_gradient(lambda: float(array_module(dout).sum(f() * dout)), x, h)


def check_layer(
    forward: Callable[..., tuple],
    backward: Callable[..., Any],
    inputs: Sequence[Any],
    rng: np.random.Generator | int | None = 0,
    h: float = 1e-3,
) -> list[float | None]:
    """Compare a layer's backward with numeric gradients of every float input.

    ``forward(*inputs)`` returns ``(*outputs, cache)``; ``backward(*douts, cache)`` returns the gradients of the
    float inputs in input order (a single array or a tuple). Integer inputs (token ids) get no gradient.
    ``None`` outputs (the LSTM's missing cell state in a GRU-like interface) are skipped.

    Returns:
        One relative error per input, ``None`` for inputs without a gradient.
    """
    rng = np.random.default_rng(rng)
    *outputs, cache = forward(*inputs)
    # drawn on the host (the same numbers on either device), moved to the outputs' device
    douts = [None if out is None else to_device(rng.standard_normal(out.shape), device_of(out)) for out in outputs]
    grads = backward(*douts, cache)
    grads = list(grads) if isinstance(grads, tuple) else [grads]
    has_grad = [is_array(x) and np.issubdtype(x.dtype, np.floating) for x in inputs]
    if len(grads) != sum(has_grad):
        raise ValueError(f"backward returned {len(grads)} gradients for {sum(has_grad)} float inputs")

    def weighted_output() -> float:
        outs = forward(*inputs)[:-1]
        return float(sum(array_module(out).sum(out * d) for out, d in zip(outs, douts, strict=True) if out is not None))

    grads_iter = iter(grads)
    return [
        rel_error(next(grads_iter), numerical_gradient(weighted_output, x, h)) if grad_wanted else None
        for x, grad_wanted in zip(inputs, has_grad, strict=True)
    ]


def check_model(model: CaptionModel, features: np.ndarray, captions: np.ndarray, h: float = 1e-3) -> dict[str, float]:
    """Compare ``model.loss``'s gradients with numeric ones, for every parameter. The model must be float64."""
    _, grads = model.loss(features, captions)
    return {
        name: rel_error(grads[name], numerical_gradient(lambda: model.loss(features, captions)[0], param, h))
        for name, param in model.params.items()
    }


def _require_float64(x: np.ndarray) -> None:
    if x.dtype != np.float64:
        raise TypeError(f"numeric gradients need a float64 array, got {x.dtype}: cast the inputs or the model")
