"""Checkpoint averaging: one model whose weights are the mean of several checkpoints of one run.

The epochs at the end of a run (``rnncap train --keep-epochs`` keeps each: ``epoch-NNN.npz``) lie near one another
on a noisy path; their mean usually scores a little better than any one of them (the self-critical fine-tunes of
the README: beam-3 CIDEr 0.2 to 1.1 above the best epoch alone). Averaging only makes sense for checkpoints of one
run, which share a class, sizes and vocabulary: anything else is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from rnncap.backend import to_numpy
from rnncap.models.base import CaptionModel

RUN_FACTS = "training"
"""The metadata key of one checkpoint's own results (best epoch, its scores): not the average's, so dropped."""


def average_models(models: Iterable[CaptionModel]) -> CaptionModel:
    """The model whose every parameter is the mean of those of ``models`` (summed in float64), on the host.

    The result is a new model of the first one's class, settings, vocabulary and dtype, with the last one's
    metadata less its :data:`RUN_FACTS`, plus ``"averaged": n``. ``models`` may be a generator (models loaded one
    at a time: only the running sum and one model are in memory).

    Raises:
        ValueError: no models, or models of another class, other settings or another vocabulary than the first.
    """
    total: dict[str, np.ndarray] = {}
    first: CaptionModel | None = None
    last: CaptionModel | None = None
    count = 0
    for count, model in enumerate(models, start=1):
        if first is None:
            first = model
            total = {name: to_numpy(value).astype(np.float64) for name, value in model.params.items()}
        else:
            _check_same_kind(first, model, count)
            for name, value in model.params.items():
                total[name] += to_numpy(value)
        last = model
    if first is None or last is None:
        raise ValueError("averaging needs at least one model")
    from rnncap.models import build_model  # the package imports this module

    averaged = build_model(first.settings, first.word_to_idx, dtype=first.dtype)
    averaged.params = {name: (value / count).astype(first.dtype) for name, value in total.items()}
    averaged.metadata = {key: value for key, value in last.metadata.items() if key != RUN_FACTS}
    averaged.metadata["averaged"] = count
    return averaged


def average_model_files(paths: Sequence[str | os.PathLike]) -> CaptionModel:
    """:func:`average_models` of the model files ``paths``, read one at a time; the result's metadata names them
    (``"averaged_from"``: the file names, in order).

    Raises:
        rnncap.models.ModelFileError: a file that cannot be read as a model.
        ValueError: no paths, or files of models that cannot be averaged (see :func:`average_models`).
    """
    from rnncap.models import load_model  # the package imports this module

    averaged = average_models(load_model(path) for path in paths)
    averaged.metadata["averaged_from"] = [Path(path).name for path in paths]
    return averaged


def _check_same_kind(first: CaptionModel, model: CaptionModel, position: int) -> None:
    """Raise ValueError unless ``model`` (the ``position``-th, 1-based) has ``first``'s class, config and words."""
    config, first_config = model.config(), first.config()
    if config != first_config:
        differences = [
            f"{key} {config.get(key)!r} (model 1: {first_config.get(key)!r})"
            for key in sorted(config.keys() | first_config.keys())
            if config.get(key) != first_config.get(key)
        ]
        raise ValueError(
            f"model {position} differs from model 1 in {', '.join(differences)}: only checkpoints of one run can "
            "be averaged"
        )
    if model.word_to_idx != first.word_to_idx:
        raise ValueError(
            f"model {position} has another vocabulary than model 1 ({model.vocab_size} words, model 1 "
            f"{first.vocab_size}): only checkpoints of one run can be averaged"
        )
