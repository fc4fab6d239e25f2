"""A stand-in for CuPy over NumPy, strict where CuPy is: the engine's CUDA code path, run on a CPU.

Installed as the ``cupy`` module (the ``device`` fixture's ``"strict"`` param, tests/conftest.py), it makes
``to_device(x, "cuda")`` hand out :class:`DeviceArray` (a NumPy array subclass) and ``array_module`` return this
module for them, so that every engine function takes the branch it takes on a GPU (one attention block, ``einsum``
without ``out``, host draws moved across ...). It refuses what would leak host arrays into device code, or what CuPy
itself refuses:

- a host array (a plain NumPy array of one dimension or more) mixed with device arrays in an operator, a ufunc, an
  index or an assignment: CuPy raises TypeError for such mixes, or moves data behind the code's back;
- a NumPy function (``np.concatenate``, ``np.zeros_like`` ...) called on a device array: the engine must call its
  ``xp``'s (CuPy dispatches some of them itself; this keeps the code explicit about where it computes);
- a host array handed to a function of this module, but to ``asarray`` and ``array``, the explicit transfers;
- the arguments CuPy documents as unsupported that the engine could reach: ``einsum(out=...)``, ``argsort(kind=)``
  other than ``"stable"``.

What it cannot show is what only a GPU shows: CuPy's kernels, its other gaps, speed. Results equal NumPy's but for
the reordered sums of the GPU branch.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numpy as np

TRANSFERS = ("asarray", "array")  # host -> device: the explicit moves
UNSUPPORTED = {"einsum": {"out"}}  # keyword arguments CuPy's documentation lists as not supported


class HostLeakError(TypeError):
    """A host array met device arrays, or a NumPy function was called on one."""


class DeviceArray(np.ndarray):
    """A NumPy array posing as a device array (see the module docstring)."""

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        where = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        args = [_unwrap(x, where) for x in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o, where) for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:  # the arrays written into, themselves (x += y keeps x)
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        name = getattr(func, "__name__", str(func))
        raise HostLeakError(f"numpy.{name} called on a device array: the engine must call xp.{name} (array_module)")

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(_index(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(_index(key), _unwrap(value, "an assignment into a device array"))

    def __repr__(self) -> str:
        return f"DeviceArray({self.view(np.ndarray)!r})"

    def get(self) -> np.ndarray:
        """A host copy, as ``cupy.ndarray.get``."""
        return np.array(self.view(np.ndarray))


def _unwrap(x: Any, where: str) -> Any:
    """A device array as the NumPy array under it (lists and tuples walked); a host array refused."""
    if isinstance(x, DeviceArray):
        return x.view(np.ndarray)
    if isinstance(x, np.ndarray) and x.ndim > 0:
        raise HostLeakError(f"a host array {x.shape} {x.dtype} reached {where} (move it with to_device or xp.asarray)")
    if isinstance(x, list | tuple):
        return type(x)(_unwrap(item, where) for item in x)
    return x


def _wrap(x: Any) -> Any:
    if isinstance(x, np.ndarray) and not isinstance(x, DeviceArray):
        return x.view(DeviceArray)
    if isinstance(x, tuple):
        return tuple(_wrap(item) for item in x)
    return x


def _index(key: Any) -> Any:
    parts = key if isinstance(key, tuple) else (key,)
    unwrapped = tuple(_unwrap(part, "an index of a device array") for part in parts)
    return unwrapped if isinstance(key, tuple) else unwrapped[0]


def _function(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` of NumPy as this module's: device arrays in and out, host arrays refused (but by the transfers)."""

    def device_function(*args: Any, **kwargs: Any) -> Any:
        refused = UNSUPPORTED.get(name, set()) & kwargs.keys()
        if refused:
            raise TypeError(f"cupy.{name} does not support {sorted(refused)}")
        if name == "argsort" and kwargs.get("kind") not in (None, "stable"):
            raise TypeError(f"cupy.argsort sorts stably only, got kind={kwargs['kind']!r}")
        if name in TRANSFERS:
            source, *rest = args
            if isinstance(source, DeviceArray):  # already there: asarray keeps it (itself), array copies
                same = name == "asarray" and kwargs.get("dtype", source.dtype) == source.dtype and not rest
                return source if same else getattr(np, name)(source.view(np.ndarray), *rest, **kwargs).view(DeviceArray)
            return np.array(source, *rest, **kwargs).view(DeviceArray)  # a transfer is a copy
        where = f"cupy.{name}"
        result = func(*_unwrap(list(args), where), **{key: _unwrap(v, where) for key, v in kwargs.items()})
        out = kwargs.get("out")
        return out if out is not None else _wrap(result)

    device_function.__name__ = name
    return device_function


class _Ufunc:
    """A NumPy ufunc as this module's, its methods too (``add.reduceat``, ``add.at``)."""

    def __init__(self, ufunc: np.ufunc) -> None:
        self._ufunc = ufunc
        self.__name__ = ufunc.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _function(self.__name__, self._ufunc)(*args, **kwargs)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return _function(f"{self.__name__}.{method}", getattr(self._ufunc, method))


class _Runtime:
    """``cupy.cuda.runtime``'s calls the engine and the GPU benchmark make (CuPy's names)."""

    @staticmethod
    def getDeviceCount() -> int:  # noqa: N802
        return 1

    @staticmethod
    def deviceSynchronize() -> None:  # noqa: N802 (nothing runs asynchronously here)
        return None

    @staticmethod
    def getDeviceProperties(device: int) -> dict[str, bytes]:  # noqa: N802
        return {"name": b"CuPy stand-in (NumPy on the CPU)"}


class StandIn(types.ModuleType):
    """The module that poses as ``cupy``."""

    ndarray = DeviceArray
    cuda = types.SimpleNamespace(runtime=_Runtime())

    def __init__(self) -> None:
        super().__init__("cupy", __doc__)

    def get_array_module(self, *arrays: Any) -> types.ModuleType:
        return self if any(isinstance(a, DeviceArray) for a in arrays) else np

    def asnumpy(self, array: Any) -> np.ndarray:
        return array.get() if isinstance(array, DeviceArray) else np.asarray(array)

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if isinstance(value, np.ufunc):
            return _Ufunc(value)
        if callable(value) and not isinstance(value, type):
            return _function(name, value)
        return value  # dtypes, constants (float32, inf, newaxis)
