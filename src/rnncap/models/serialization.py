"""One ``.npz`` file per model: weights, configuration and vocabulary, readable without unpickling.

Layout: ``__format__`` (a version string), ``__config__``, ``__vocab__`` and ``__meta__`` (JSON strings), and one
array per parameter under ``param/<name>``. The metadata says how to use the model (e.g. the image encoder whose
features it reads, how it was trained and scored); a file without it reads as empty metadata. Loading passes
``allow_pickle=False``, so a crafted file cannot run code, and every key, shape and value is checked before a model
is built from it.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rnncap.backend import to_numpy
from rnncap.files import atomic_write

FORMAT = "rnncap-model-1"
PARAM_PREFIX = "param/"


class ModelFileError(ValueError):
    """A model file that is missing, corrupt, truncated or does not match the model it claims to be."""


def write_model_file(
    path: str | os.PathLike,
    config: dict[str, Any],
    word_to_idx: dict[str, int],
    params: dict[str, np.ndarray],
    weights_dtype: np.dtype | type | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a model file atomically (a temporary file renamed over ``path``), so a crash never leaves half a file.

    Args:
        path: destination; ``.npz`` is appended when missing (as ``np.savez`` would).
        config: JSON-serialisable constructor arguments, with the class name under ``"model"``.
        word_to_idx: the vocabulary.
        params: the weights by name, on either device (a file holds NumPy arrays).
        weights_dtype: store the weights in this dtype (float16 halves a shipped model); default: as they are.
        metadata: JSON-serialisable facts about the model (encoder name, training data, scores).

    Returns:
        The path written.

    Raises:
        ModelFileError: a weight is NaN or infinite, or past the range of ``weights_dtype`` (float16 ends at
            65504): a file the loader would refuse is never written, and nothing is written in its place.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    params = {name: to_numpy(value) for name, value in params.items()}
    check_storable(path, params, weights_dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {
        "__format__": np.array(FORMAT),
        "__config__": np.array(json.dumps(config)),
        "__vocab__": np.array(json.dumps({word: int(idx) for word, idx in word_to_idx.items()})),
        "__meta__": np.array(json.dumps(metadata or {}, allow_nan=False)),
    }
    for name, value in params.items():
        arrays[PARAM_PREFIX + name] = value if weights_dtype is None else value.astype(weights_dtype)
    # Written as it is read, without pickles (explicit, so that no key of **arrays can stand for allow_pickle).
    return atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))


def check_storable(path: Path, params: dict[str, np.ndarray], weights_dtype: np.dtype | type | None) -> None:
    """Refuse weights that would make a file the loader refuses: NaN or infinite, or (cast to a floating
    ``weights_dtype``) past its largest finite value, where the cast would turn them infinite."""
    limit = None
    if weights_dtype is not None and np.issubdtype(np.dtype(weights_dtype), np.floating):
        limit = float(np.finfo(weights_dtype).max)
    for name, value in params.items():
        finite = np.isfinite(value)
        if not finite.all():
            raise ModelFileError(
                f"refusing to write {path}: parameter {name} holds {value.size - np.count_nonzero(finite)} NaN or "
                "infinite values (a diverged model?)"
            )
        largest = float(np.abs(value).max()) if value.size else 0.0
        if limit is not None and largest > limit:
            raise ModelFileError(
                f"refusing to write {path}: parameter {name} reaches {largest:.6g}, past the largest "
                f"{np.dtype(weights_dtype).name} value {limit:g}, so its weights would be stored as infinities "
                "(a diverged model?)"
            )


class ModelFile(NamedTuple):
    """The parts of a model file; ``params`` as stored (the model checks their shapes and casts them)."""

    config: dict[str, Any]
    word_to_idx: dict[str, int]
    params: dict[str, np.ndarray]
    metadata: dict[str, Any]


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """Read a model file written by :func:`write_model_file`.

    Raises:
        ModelFileError: the file is missing, not a model file, corrupt or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path} is not a readable rnncap model file (corrupt or truncated?): {exc}") from exc
    if str(arrays.get("__format__", "")) != FORMAT:
        raise ModelFileError(f"{path} is not an rnncap model file: expected format {FORMAT!r}")
    try:
        config = json.loads(str(arrays["__config__"]))
        word_to_idx = json.loads(str(arrays["__vocab__"]))
        metadata = json.loads(str(arrays.get("__meta__", "{}")))
    except (KeyError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: configuration or vocabulary is missing or not valid JSON: {exc}") from exc
    if not all(isinstance(part, dict) for part in (config, word_to_idx, metadata)):
        raise ModelFileError(f"{path}: configuration, vocabulary and metadata must be JSON objects")
    params = {key[len(PARAM_PREFIX) :]: value for key, value in arrays.items() if key.startswith(PARAM_PREFIX)}
    return ModelFile(config, word_to_idx, params, metadata)


def check_params(path: str | os.PathLike, stored: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]]) -> None:
    """Refuse stored weights whose names, shapes or values do not fit the parameter shapes ``expected`` (name ->
    shape, from the file's configuration)."""
    missing, unexpected = expected.keys() - stored.keys(), stored.keys() - expected.keys()
    if missing or unexpected:
        raise ModelFileError(
            f"{path}: parameters do not match the model: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
        )
    for name, value in stored.items():
        if value.shape != tuple(expected[name]):
            raise ModelFileError(
                f"{path}: parameter {name} has shape {value.shape}, the configuration expects {tuple(expected[name])}"
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise ModelFileError(f"{path}: parameter {name} has dtype {value.dtype}, expected floating point")
        if not np.isfinite(value).all():
            raise ModelFileError(f"{path}: parameter {name} holds NaN or infinite values")
