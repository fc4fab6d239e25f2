"""Captioning models: parameters in a dict, ``loss(features, captions) -> (loss, grads)``, decoding, files."""

from __future__ import annotations

import os

import numpy as np

from rnncap.models.attention_captioner import AttentionCaptioner
from rnncap.models.base import CaptionModel
from rnncap.models.captioning_rnn import CaptioningRNN
from rnncap.models.serialization import ModelFileError, read_model_file

# Every model class by the name its files carry under config["model"].
MODELS: dict[str, type[CaptionModel]] = {"CaptioningRNN": CaptioningRNN, "AttentionCaptioner": AttentionCaptioner}


def load_model(path: str | os.PathLike, dtype: np.dtype | type | str | None = None) -> CaptionModel:
    """Load any rnncap model file, whichever class wrote it (see :data:`MODELS`).

    Raises:
        ModelFileError: the file is missing, corrupt, or names no known model class.
    """
    name = read_model_file(path).config.get("model")
    if name not in MODELS:
        raise ModelFileError(f"{path} holds a {name!r} model; this rnncap knows {sorted(MODELS)}")
    return MODELS[name].load(path, dtype=dtype)


__all__ = ["MODELS", "AttentionCaptioner", "CaptionModel", "CaptioningRNN", "ModelFileError", "load_model"]
