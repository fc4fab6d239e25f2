"""Where the engine's arrays live: NumPy on the host (``"cpu"``) or CuPy on an NVIDIA GPU (``"cuda"``).

The layers stay pure functions and take their array module from their inputs, ``xp = array_module(x, w)``, as
``cupy.get_array_module`` does: one copy of every layer serves both devices, and there is no global switch. A model
holds its parameters on one device (``model.to("cuda")``); what comes from the host (features, token ids, the
dropout draws of the trainer's NumPy generator) moves there per batch; model files, checkpoints and the token ids
the searches return stay NumPy::

    xp = array_module(x, Wx)           # numpy, or cupy when any of them is a CuPy array
    features = to_device(features, model.device)
    ids = to_numpy(ids)                # a host copy (the array itself when it is NumPy already)

CuPy is an optional extra (``pip install 'rnncap[gpu]'``, the CUDA 13 wheel ``cupy-cuda13x``). It is imported only
when ``"cuda"`` is asked for, and looked at only once something imported it: where no CuPy array can exist (CuPy
was never imported), :func:`array_module` is NumPy without trying the import, so the default path never loads it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any, Literal, get_args

import numpy as np

Device = Literal["cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)

CUDA_HELP = (
    "--device cuda needs CuPy and an NVIDIA GPU: pip install 'rnncap[gpu]' (CuPy for CUDA 13, cupy-cuda13x) on a "
    "machine with an NVIDIA driver, or run on the CPU (--device cpu, the default)"
)


class DeviceError(RuntimeError):
    """The device asked for cannot be used here (no CuPy, no GPU), or is not a device."""


def array_module(*arrays: object) -> ModuleType:
    """The array module of ``arrays``: ``cupy`` when any of them is a CuPy array, else ``numpy`` (scalars, None and
    NumPy arrays count for NumPy)."""
    cupy = sys.modules.get("cupy")
    if cupy is None:  # nothing imported CuPy, so no CuPy array exists
        return np
    module: ModuleType = cupy.get_array_module(*arrays)
    return module


def check_device(device: str) -> Device:
    """``device`` if it can be used here; the message says what is missing.

    Raises:
        DeviceError: not ``"cpu"`` or ``"cuda"``; or ``"cuda"`` without CuPy or without a GPU it can reach.
    """
    if device == "cpu":
        return "cpu"
    if device != "cuda":
        raise DeviceError(f"device must be one of {list(DEVICES)}, got {device!r}")
    _cupy()
    return "cuda"


def module_for(device: str) -> ModuleType:
    """The array module of ``device``: numpy for ``"cpu"``, cupy for ``"cuda"`` (checked: :func:`check_device`)."""
    return np if check_device(device) == "cpu" else _cupy()


def device_of(array: object) -> Device:
    """``"cuda"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "cpu" if array_module(array) is np else "cuda"


def is_array(value: object) -> bool:
    """Whether ``value`` is an array of either device (a NumPy or a CuPy ndarray)."""
    return isinstance(value, np.ndarray) or array_module(value) is not np


def to_device(array: Any, device: str) -> Any:
    """``array`` on ``device``: itself when it is there already (no copy), else a copy there (host to GPU or back).

    Raises:
        DeviceError: ``device`` cannot be used here (see :func:`check_device`).
    """
    if check_device(device) == "cpu":
        return to_numpy(array)
    return _cupy().asarray(array)


def to_numpy(array: Any) -> Any:
    """A NumPy array of ``array``: itself when it is NumPy already (or not an array: scalars, lists), else a host
    copy of the device array."""
    if array_module(array) is np:
        return array
    return array.get()


def _cupy() -> ModuleType:
    """The cupy module, once a GPU is known to be reachable through it."""
    try:
        import cupy
    except ImportError as exc:  # not installed, or installed without the CUDA libraries it was built for
        raise DeviceError(f"{CUDA_HELP} (CuPy does not import: {exc})") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError without a driver; CuPy's errors share no public base class
        raise DeviceError(f"{CUDA_HELP} (CuPy finds no CUDA device: {exc})") from exc
    if count < 1:
        raise DeviceError(f"{CUDA_HELP} (CuPy finds no CUDA device)")
    module: ModuleType = cupy
    return module


def einsum_into(out: Any, subscripts: str, *operands: Any) -> Any:
    """``einsum(subscripts, *operands)`` written into ``out`` and returned, on either device: NumPy writes it there
    directly (no temporary); ``cupy.einsum`` takes no ``out``, so its result is copied in."""
    xp = array_module(out, *operands)
    if xp is np:
        return np.einsum(subscripts, *operands, out=out)
    out[...] = xp.einsum(subscripts, *operands)
    return out
