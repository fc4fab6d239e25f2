"""What every captioning model shares: its vocabulary and special ids, dtype, dimension checks, metadata, files.

A model class (``CaptioningRNN``, ``AttentionCaptioner``) calls :meth:`CaptionModel._setup` first in its
``__init__``, then builds ``self.params``; it defines ``config()`` (its constructor arguments), and inherits
``save`` / ``load`` and the caption checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.models.serialization import ModelFileError, check_params, read_model_file, write_model_file
from rnncap.vocab import END, END_ID, NULL, START, START_ID, UNK, idx_to_word_list


class CaptionModel:
    """Base of the captioning models; see the module docstring."""

    params: dict[str, np.ndarray]

    def _setup(
        self, word_to_idx: dict[str, int], dtype: np.dtype | type | str, dropout: float, dims: dict[str, Any]
    ) -> None:
        """Check and keep what every model has; ``dims`` are positive integer sizes, set as attributes."""
        for name, value in dims.items():
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.word_to_idx = dict(word_to_idx)
        self.idx_to_word = idx_to_word_list(self.word_to_idx)
        self.null_id = self.word_to_idx[NULL]
        self.start_id = self.word_to_idx.get(START, START_ID)
        self.end_id = self.word_to_idx.get(END, END_ID)
        self.unk_id = self.word_to_idx.get(UNK)  # decoding never emits it (see rnncap.decode)
        self.vocab_size = len(self.idx_to_word)
        # Facts saved with the weights that the network does not use, e.g. {"encoder": "efficientnet-lite2"}.
        self.metadata: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        """The constructor arguments (without the vocabulary), JSON-serialisable, with the class under "model"."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike, weights_dtype: np.dtype | type | None = None) -> Path:
        """Save weights, configuration, vocabulary and ``metadata`` in one ``.npz`` file; returns the path written."""
        return write_model_file(path, self.config(), self.word_to_idx, self.params, weights_dtype, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike, dtype: np.dtype | type | str | None = None) -> Any:
        """Load a model saved by :meth:`save`, never unpickling; weights are cast to ``dtype`` (default: as saved).

        Raises:
            ModelFileError: the file is missing, corrupt, truncated, of another model, or its weights do not fit.
        """
        config, word_to_idx, stored, metadata = read_model_file(path)
        if config.get("model") != cls.__name__:
            raise ModelFileError(f"{path} holds a {config.get('model')!r} model, not a {cls.__name__}")
        kwargs = {key: value for key, value in config.items() if key != "model"}
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            model = cls(word_to_idx, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: configuration {config} does not describe a {cls.__name__}: {exc}") from exc
        check_params(path, stored, model.params)
        model.params = {name: stored[name].astype(model.dtype) for name in model.params}
        model.metadata = metadata
        return model

    def _check_feature_values(self, features: np.ndarray) -> np.ndarray:
        """Features of the right shape -> the same cast to the model's dtype, refusing an empty batch, non-numbers,
        NaN and infinities (naming the rows)."""
        if features.shape[0] == 0:
            raise ValueError("empty batch: features has no rows")
        if not np.issubdtype(features.dtype, np.number):
            raise ValueError(f"features must be numeric, got dtype {features.dtype}")
        features = features.astype(self.dtype, copy=False)
        finite = np.isfinite(features).reshape(len(features), -1).all(axis=1)
        if not finite.all():
            raise ValueError(f"features hold NaN or infinite values (rows {np.flatnonzero(~finite)[:10].tolist()})")
        return features

    def _check_captions(self, captions: np.ndarray, batch_size: int) -> np.ndarray:
        captions = np.asarray(captions)
        if captions.ndim != 2 or captions.shape[0] != batch_size or captions.shape[1] < 2:
            raise ValueError(f"captions must have shape ({batch_size}, T) with T >= 2, got {captions.shape}")
        if not np.issubdtype(captions.dtype, np.integer):
            raise ValueError(f"captions must hold integer token ids, got dtype {captions.dtype}")
        low, high = captions.min(), captions.max()
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(f"caption token id {bad} is outside the vocabulary [0, {self.vocab_size})")
        return captions
