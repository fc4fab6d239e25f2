"""Where a model meets the encoder whose features it reads: one place for the checks and the grid layout.

A model file records the encoder of its training features (``metadata["encoder"]``); a prepared file records the
encoder of its features; an :class:`~rnncap.encoders.Encoder` computes features from photos. The captioner and the
evaluation both ask the same questions of a model and an encoder (do the sizes fit? does the grid have the cells
the model attends over?) and both lay (T, L) attention weights over the encoder's h x w grid: here, once.
"""

from __future__ import annotations

import warnings

import numpy as np

from rnncap.decode import caption_words
from rnncap.encoders.specs import EncoderSpec, get_spec
from rnncap.models.base import CaptionModel


def model_encoder(
    model: CaptionModel, given: str | None = None, *, source: str | None = None, model_name: str = "the model"
) -> str:
    """The encoder whose features ``model`` reads: the one its metadata names, checked against ``given``.

    Args:
        model: a captioning model.
        given: the encoder of the features at hand, if known: an Encoder's name, or a prepared file's encoder.
        source: where ``given`` comes from, for messages (a prepared file's path); None: an encoder the caller chose.
        model_name: how messages name the model (e.g. its file).

    Returns:
        The metadata's encoder, else ``given``; from a ``source``, with a warning (the model cannot confirm it).

    Raises:
        ValueError: the metadata names another encoder than ``given``, or neither names one.
    """
    named = model.metadata.get("encoder")
    if named is None and given is None:
        raise ValueError(
            f"{model_name}'s metadata names no image encoder (no 'encoder' key): pass the encoder its features "
            "came from, e.g. Captioner(model, load_encoder('efficientnet-lite2'))"
        )
    if named is None:
        if source is not None:
            warnings.warn(
                f"{model_name} does not record the encoder of its training features; assuming {source}'s "
                f"{given!r} is the right one",
                stacklevel=3,
            )
        return str(given)
    if given is not None and given != named:
        if source is None:
            raise ValueError(
                f"{model_name} reads features of the {named!r} encoder, but the encoder given is {given!r}"
            )
        raise ValueError(
            f"{model_name} reads features of the {named!r} encoder, but {source} holds features of {given!r}: "
            f"prepare the data again with --encoder {named}"
        )
    return str(named)


def check_spec(model: CaptionModel, spec: EncoderSpec, *, model_name: str = "the model") -> None:
    """Refuse an encoder whose features do not fit the model: another feature size D or, for a model that reads
    the grid, another number of grid cells L."""
    D = model.feature_shape[-1]
    if spec.feature_dim != D:
        raise ValueError(f"{model_name} reads {D}-d features, but {spec.name} gives {spec.feature_dim}-d ones")
    if model.reads_grid and model.feature_shape[0] != spec.grid_cells:
        rows, cols = spec.grid_shape
        raise ValueError(
            f"{model_name} attends over {model.feature_shape[0]} grid cells, but {spec.name} gives a {rows} x {cols} "
            f"grid of {spec.grid_cells}: its features came from another encoder"
        )


def check_features(model: CaptionModel, features: np.ndarray, source: str, *, model_name: str = "the model") -> None:
    """Refuse (M, ...) features of another shape than the model reads; ``source`` names where they came from."""
    if features.shape[1:] != model.feature_shape:
        raise ValueError(
            f"{model_name} reads features of shape {model.feature_shape}, but {source} holds features of shape "
            f"{features.shape[1:]}"
        )


def known_spec(encoder: str) -> EncoderSpec | None:
    """The spec of a known encoder, None for a name rnncap does not know (features prepared elsewhere)."""
    try:
        return get_spec(encoder)
    except ValueError:
        return None


def grid_maps(
    model: CaptionModel, ids: np.ndarray, weights: np.ndarray, grid_shape: tuple[int, int]
) -> list[tuple[tuple[str, ...], np.ndarray]]:
    """Each caption's words and their attention maps laid over the encoder's grid.

    Args:
        model: the model that searched.
        ids: (N, max_length) token ids from a search with ``return_attention``.
        weights: (N, max_length, L) the weights it returned.
        grid_shape: (h, w) with h * w = L: the grid's L cells are its rows one after the other
            (:class:`rnncap.encoders.Encoder`).

    Returns:
        N pairs (words, (T, h, w) maps), T the caption's words (see :func:`rnncap.decode.caption_words`).
    """
    words = caption_words(ids, model.idx_to_word, model.end_id)
    return [
        (caption, row[: len(caption)].reshape(len(caption), *grid_shape))
        for caption, row in zip(words, weights, strict=True)
    ]
