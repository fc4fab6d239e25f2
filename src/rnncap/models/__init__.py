"""Captioning models: parameters in a dict, ``loss(features, captions) -> (loss, grads)``, decoding, files."""

from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from rnncap.models.attention_captioner import AttentionCaptioner
from rnncap.models.averaging import average_model_files, average_models
from rnncap.models.base import CaptionModel
from rnncap.models.captioning_rnn import CaptioningRNN
from rnncap.models.config import AttentionConfig, ModelConfig, RNNConfig
from rnncap.models.serialization import ModelFileError, read_model_file

# Every model class by the name its files carry under config["model"].
MODELS: dict[str, type[CaptionModel]] = {"CaptioningRNN": CaptioningRNN, "AttentionCaptioner": AttentionCaptioner}


def load_model(
    path: str | os.PathLike, dtype: np.dtype | type | str | None = None, device: str = "cpu"
) -> CaptionModel:
    """Load any rnncap model file, whichever class wrote it (see :data:`MODELS`), onto ``device``.

    Raises:
        ModelFileError: the file is missing, corrupt, or names no known model class.
        rnncap.backend.DeviceError: ``device`` cannot be used here.
    """
    name = read_model_file(path).config.get("model")
    if name not in MODELS:
        raise ModelFileError(f"{path} holds a {name!r} model; this rnncap knows {sorted(MODELS)}")
    return MODELS[name].load(path, dtype=dtype, device=device)


def build_model(
    settings: ModelConfig,
    word_to_idx: dict[str, int],
    *,
    dtype: np.dtype | type | str = np.float32,
    rng: np.random.Generator | int | None = 0,
) -> CaptionModel:
    """A new model with random weights: a CaptioningRNN for an :class:`RNNConfig`, an AttentionCaptioner for an
    :class:`AttentionConfig`."""
    model_class = AttentionCaptioner if isinstance(settings, AttentionConfig) else CaptioningRNN
    return model_class(word_to_idx, **asdict(settings), dtype=dtype, rng=rng)


__all__ = [
    "MODELS",
    "AttentionCaptioner",
    "AttentionConfig",
    "CaptionModel",
    "CaptioningRNN",
    "ModelConfig",
    "ModelFileError",
    "RNNConfig",
    "average_model_files",
    "average_models",
    "build_model",
    "load_model",
]
