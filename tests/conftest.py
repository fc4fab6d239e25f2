"""Shared fixtures (the plain builders they and the tests use live in helpers.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def export_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One ONNX export per test session, in a temporary cache rather than the user's (modules that run the
    encoder through the CLI use it with ``pytestmark = pytest.mark.usefixtures("export_cache")``)."""
    monkeypatch.setenv("RNNCAP_CACHE", str(tmp_path_factory.getbasetemp() / "rnncap-cache"))
