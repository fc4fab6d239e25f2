"""Shared fixtures (the plain builders they and the tests use live in helpers.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import cupy_standin


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One ONNX export per test session, in a temporary cache rather than the user's (modules that run the
    encoder through the CLI use it with ``pytestmark = pytest.mark.usefixtures("export_cache")``)."""
    monkeypatch.setenv("RNNCAP_CACHE", str(tmp_path_factory.getbasetemp() / "rnncap-cache"))


def cuda_unavailable() -> str | None:
    """Why ``"cuda"`` cannot run here ("no CuPy ...", "no GPU ..."), or None where it can."""
    try:
        import cupy
    except ImportError as exc:
        return f"no CuPy ({exc}): pip install 'rnncap[gpu]' on a machine with an NVIDIA GPU"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy's CUDA errors share no public base class
        return f"no GPU ({exc})"
    return None if count > 0 else "no GPU (CuPy finds no CUDA device)"


@pytest.fixture(params=["cpu", "cuda", "strict"])
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The device a test computes on, one test per param:

    - ``"cpu"``: NumPy;
    - ``"cuda"``: CuPy on the GPU, skipped with the reason where CuPy or a GPU is missing (``-k cuda`` selects these);
    - ``"strict"``: the CUDA code path on the CPU, through tests/cupy_standin.py posing as ``cupy``: it refuses
      host arrays leaking into device code. The test sees the device ``"cuda"``.
    """
    if request.param == "cuda":
        reason = cuda_unavailable()
        if reason is not None:
            pytest.skip(reason)
    if request.param == "strict":
        monkeypatch.setitem(sys.modules, "cupy", cupy_standin.StandIn())
        return "cuda"
    return request.param
