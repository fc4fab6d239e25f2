"""First-order update rules with CS231n's interface, and gradient clipping.

Every rule is ``update(w, dw, config=None) -> (next_w, config)``: ``w`` and ``dw`` are arrays of one shape,
``config`` holds the hyper-parameters (filled in from :data:`DEFAULTS`) and the rule's state (``velocity``,
``cache``, ``m``/``v``/``t``), which the rule creates on the first call and carries in the same dict. Use one
config per parameter array.

Unlike CS231n's reference solutions, the rules work in place: ``w`` and the state arrays are overwritten and
returned, so that a training step allocates only a few temporaries, and ``w`` keeps its dtype (float32 stays
float32). ``dw`` is never modified. A ``w`` that cannot be overwritten (read-only, or not floating point) is
copied first. The rules and the norms run on the device of ``w`` (NumPy or CuPy arrays, :mod:`rnncap.backend`),
and the state arrays live beside it.

References: Stanford CS231n assignment 2, ``optim.py`` (names, defaults, formulas); Kingma & Ba 2015 (Adam);
Hinton's lecture 6e (RMSProp); ``torch.nn.utils.clip_grad_norm_`` (clipping).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from numbers import Integral, Real
from typing import Any

import numpy as np

from rnncap.backend import array_module, is_array

UpdateRule = Callable[[np.ndarray, np.ndarray, dict[str, Any] | None], tuple[np.ndarray, dict[str, Any]]]

DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8},
}
"""Hyper-parameters of every rule and their default values (CS231n's)."""

STATE_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("velocity",),
    "rmsprop": ("cache",),
    "adam": ("m", "v", "t"),
}
"""The keys each rule keeps its state under, in the same config dict as its hyper-parameters."""

# Allowed range of each hyper-parameter: (lowest, highest, whether the lowest is allowed).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (0.0, math.inf, True),
    "momentum": (0.0, 1.0, True),
    "decay_rate": (0.0, 1.0, True),
    "beta1": (0.0, 1.0, True),
    "beta2": (0.0, 1.0, True),
    "epsilon": (0.0, math.inf, False),
}


def resolve_hyperparameters(rule: str, config: Mapping[str, Any] | None = None) -> dict[str, float]:
    """The hyper-parameters ``rule`` will use with ``config``: the defaults, overridden by ``config``, checked.

    State entries of ``config`` (``velocity``, ``m`` ...) are allowed and left out of the result.

    Raises:
        ValueError: unknown rule, unknown key (a typo such as ``learning_rat``), or a value out of range.
    """
    if rule not in DEFAULTS:
        raise ValueError(f"unknown update rule {rule!r}; choose one of {sorted(DEFAULTS)}")
    config = {} if config is None else config
    unknown = config.keys() - DEFAULTS[rule].keys() - set(STATE_KEYS[rule])
    if unknown:
        raise ValueError(
            f"{rule}: unknown config keys {sorted(unknown)}; hyper-parameters are {sorted(DEFAULTS[rule])}"
        )
    hyper = {key: config.get(key, default) for key, default in DEFAULTS[rule].items()}
    for key, value in hyper.items():
        low, high, low_ok = _RANGES[key]
        if not isinstance(value, Real) or isinstance(value, bool):
            raise ValueError(f"{rule}: {key} must be a real number, got {value!r}")
        number = float(value)  # numbers.Real is not typed as comparable with float
        if not (low < number < high or (low_ok and number == low)):
            interval = f"{'[' if low_ok else '('}{low:g}, {high:g})"
            raise ValueError(f"{rule}: {key} must be in {interval}, got {value!r}")
    return hyper


def _prepare(
    rule: str, w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Check the arguments of one update, fill in the defaults and return ``(w, dw, config)``.

    ``w`` comes back as an array the rule may overwrite: itself when possible, else a floating-point copy.
    """
    if config is None:
        config = {}
    config.update(resolve_hyperparameters(rule, config))
    xp = array_module(w, dw)
    w, dw = (a if is_array(a) else np.asarray(a) for a in (w, dw))  # arrays stay where they are
    if w.shape != dw.shape:
        raise ValueError(f"{rule}: gradient shape {dw.shape} does not match weight shape {w.shape}")
    if not np.issubdtype(w.dtype, np.floating):
        w = w.astype(np.float64)
    elif xp is np and not w.flags.writeable:  # (device arrays are always writeable)
        w = w.copy()
    for key in STATE_KEYS[rule]:
        if key == "t":
            t = config.setdefault("t", 0)
            if not isinstance(t, Integral) or isinstance(t, bool) or t < 0:
                raise ValueError(f"{rule}: step count t must be a non-negative integer, got {t!r}")
            continue
        state = config.setdefault(key, xp.zeros_like(w))
        if not is_array(state) or state.shape != w.shape:
            shape = getattr(state, "shape", type(state).__name__)
            raise ValueError(f"{rule}: state {key!r} has shape {shape}, expected {w.shape} like the weights")
        if array_module(state) is not xp:
            raise ValueError(f"{rule}: state {key!r} is on another device than the weights: move it with them")
    return w, dw, config


def sgd(w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Vanilla stochastic gradient descent: ``w -= learning_rate * dw``.

    Args:
        w: weights, any shape; overwritten.
        dw: gradient of the loss with respect to ``w``, same shape.
        config: ``learning_rate`` (default 1e-2).

    Returns:
        next_w (the updated ``w``), config.
    """
    w, dw, config = _prepare("sgd", w, dw, config)
    w -= config["learning_rate"] * dw
    return w, config


def sgd_momentum(
    w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """SGD with momentum: ``v = momentum * v - learning_rate * dw``, ``w += v``.

    Args:
        w: weights, any shape; overwritten.
        dw: gradient, same shape.
        config: ``learning_rate`` (1e-2), ``momentum`` (0.9); state ``velocity`` (like ``w``, starts at zero).

    Returns:
        next_w, config.
    """
    w, dw, config = _prepare("sgd_momentum", w, dw, config)
    v = config["velocity"]
    v *= config["momentum"]
    v -= config["learning_rate"] * dw
    w += v
    return w, config


def rmsprop(w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """RMSProp: a running mean of squared gradients scales each weight's step.

    ``cache = decay_rate * cache + (1 - decay_rate) * dw**2``, ``w -= learning_rate * dw / (sqrt(cache) + epsilon)``.

    Args:
        w: weights, any shape; overwritten.
        dw: gradient, same shape.
        config: ``learning_rate`` (1e-2), ``decay_rate`` (0.99), ``epsilon`` (1e-8); state ``cache`` (like ``w``).

    Returns:
        next_w, config.
    """
    w, dw, config = _prepare("rmsprop", w, dw, config)
    xp = array_module(w)
    cache = config["cache"]
    cache *= config["decay_rate"]
    step = xp.square(dw)
    step *= 1 - config["decay_rate"]
    cache += step
    xp.sqrt(cache, out=step)
    step += config["epsilon"]
    xp.divide(dw, step, out=step)
    step *= config["learning_rate"]
    w -= step
    return w, config


def adam(w: np.ndarray, dw: np.ndarray, config: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Adam: bias-corrected running means of the gradient (``m``) and of its square (``v``).

    ``t += 1``, ``m = beta1 m + (1 - beta1) dw``, ``v = beta2 v + (1 - beta2) dw**2``,
    ``w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)``.

    Args:
        w: weights, any shape; overwritten.
        dw: gradient, same shape.
        config: ``learning_rate`` (1e-3), ``beta1`` (0.9), ``beta2`` (0.999), ``epsilon`` (1e-8); state ``m``,
            ``v`` (like ``w``) and the step count ``t`` (an int, starts at 0).

    Returns:
        next_w, config.
    """
    w, dw, config = _prepare("adam", w, dw, config)
    xp = array_module(w)
    beta1, beta2 = config["beta1"], config["beta2"]
    config["t"] = t = config["t"] + 1
    m, v = config["m"], config["v"]
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    step = xp.square(dw)
    step *= 1 - beta2
    v += step
    # The bias corrections are scalars: fold them into the denominator and the step size.
    xp.divide(v, 1 - beta2**t, out=step)
    xp.sqrt(step, out=step)
    step += config["epsilon"]
    xp.divide(m, step, out=step)
    step *= config["learning_rate"] / (1 - beta1**t)
    w -= step
    return w, config


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}
"""Every update rule by name."""


def get_update_rule(name: str) -> UpdateRule:
    """The update rule called ``name`` (a key of :data:`UPDATE_RULES`); ValueError for an unknown name."""
    try:
        return UPDATE_RULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown update rule {name!r}; choose one of {sorted(UPDATE_RULES)}") from None


def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of all gradients taken together, ``sqrt(sum_k ||g_k||^2)``; inf or nan if any entry is."""
    # A dot of the flattened array is one BLAS call per gradient and allocates nothing.
    return math.sqrt(sum(float(array_module(g).dot(g.ravel(), g.ravel())) for g in grads.values()))


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so that their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: when the norm exceeds ``max_norm`` every gradient is multiplied by
    ``max_norm / (norm + 1e-6)``, which keeps the direction of the whole update. A non-finite norm leaves the
    gradients untouched (scaling would turn inf into nan and hide where it came from): check the returned norm.

    Args:
        grads: gradients by parameter name; arrays are modified in place.
        max_norm: the largest global norm allowed, > 0.

    Returns:
        The global norm before clipping.
    """
    if not isinstance(max_norm, Real) or isinstance(max_norm, bool) or not 0 < max_norm < math.inf:
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    total = global_norm(grads)
    if math.isfinite(total) and total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads.values():
            g *= scale
    return total
