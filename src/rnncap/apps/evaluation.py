"""Evaluate a trained model on a split of a prepared data file: caption every photo, score, describe, show.

::

    from rnncap.apps.evaluation import evaluate_model
    result = evaluate_model("runs/flickr/best.npz", "flickr8k.h5", split="dev", beam_size=3)
    print(result.scores)                      # BLEU-1..4, METEOR, ROUGE_L, CIDEr on the 0-1 scale
    result.write_json("scores.json")          # scores, settings, caption habits and every caption
    result.write_gallery("gallery.html")      # the first 100 photos with their captions, one offline HTML file

Captions are decoded in batches (every batch vectorised over its photos and beams) and scored by
:func:`rnncap.metrics.evaluate` against the split's human captions, as the COCO caption evaluation does. For an
attention model, the search also keeps where the model looked for each word of the first photos' captions (the
gallery's), and the gallery draws those attention maps under the photos. The result, its JSON and its gallery:
:mod:`rnncap.apps.evaluation_result`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnncap.apps.compat import check_features, grid_maps, known_spec, model_encoder
from rnncap.apps.evaluation_result import DecodingSettings, EvaluationResult, describe_stats
from rnncap.data.store import Store, open_store
from rnncap.decode import search_batches
from rnncap.metrics import METRICS, caption_stats, evaluate
from rnncap.models import CaptionModel, load_model
from rnncap.text import decode_captions

# The result and its presentation live in apps/evaluation_result.py; they are imported from here too.
__all__ = ["DecodingSettings", "EvaluationResult", "describe_stats", "evaluate_model"]

TRAIN_SPLIT = "train"  # the split whose captions the model learned; copies of them are counted


def evaluate_model(
    model: CaptionModel | str | os.PathLike,
    data_path: str | os.PathLike,
    split: str = "dev",
    beam_size: int = 3,
    max_length: int | None = None,
    length_penalty: float = 0.0,
    metrics: Sequence[str] = METRICS,
    tokenizer: str = "rnncap",
    batch_size: int = 256,
    progress: bool | None = None,
    attention_maps: int | None = 100,
    device: str | None = None,
) -> EvaluationResult:
    """Caption every photo of a split of a prepared file and score the captions against its human ones.

    Args:
        model: a captioning model, or the path of a model file (:func:`rnncap.models.load_model`).
        data_path: the prepared file (``rnncap prepare``), with features extracted by the model's encoder (and
            its grid features for an attention model).
        split: the split to evaluate, e.g. ``"dev"``, ``"val"``, ``"test"``.
        beam_size: hypotheses kept per photo; 1 is greedy search.
        max_length: the most tokens generated per caption, ``<END>`` included; None: the model's
            ``metadata["max_length"]``, else the file's longest caption plus ``<END>`` (17 for a file prepared
            with ``--max-length 16``).
        length_penalty: the beam's length exponent (see :func:`rnncap.decode.beam_search`).
        metrics: any of :data:`rnncap.metrics.METRICS`.
        tokenizer: ``"rnncap"`` or ``"ptb"`` (Java), as in :func:`rnncap.metrics.evaluate`.
        batch_size: photos decoded at once; changes speed and memory, never the captions.
        progress: show a progress bar while decoding; None: only on a terminal.
        attention_maps: for an attention model, keep where it looked for each word of the first this many photos
            (None: every photo; 0: none), for :meth:`EvaluationResult.write_gallery` to draw. The captions are the
            same either way; only the batches holding those photos pay for the weights.
        device: where the model decodes, ``"cpu"`` or ``"cuda"`` (:mod:`rnncap.backend`); None: a model given
            stays where it is, a model file loads onto the CPU.

    Returns:
        The captions, their scores on the 0-1 scale and their habits.

    Raises:
        StoreError: the file is missing or damaged, has no such split, or the split's features are not all there.
        ModelFileError: ``model`` names a missing or corrupt model file.
        ValueError: the model reads features of another encoder or size than the file holds; a bad setting.
        rnncap.backend.DeviceError: ``device`` cannot be used here (``"cuda"`` without CuPy or a GPU).

    Warns:
        UserWarning: the model does not name its encoder; attention maps were asked for, but rnncap does not know
            how the file's encoder lays out its grid.
    """
    # Over 60 lines only for the docstring of its eleven arguments and the fields of its result: the steps (read
    # the split, decode, score) are the functions below and rnncap.metrics.evaluate.
    model_path = None
    if isinstance(model, str | os.PathLike):
        model_path = str(model)
        model = load_model(model, device=device or "cpu")
    elif device is not None:
        model.to(device)
    model_name = model_path or f"the {type(model).__name__}"
    data_path = Path(data_path)
    data = _read_split(data_path, split, model)
    model_encoder(model, data.encoder, source=str(data_path), model_name=model_name)
    check_features(model, data.features, str(data_path), model_name=model_name)
    if max_length is None:  # the model's own (what `rnncap caption` uses), else room for the file's longest caption
        max_length = model.metadata.get("max_length", data.max_words + 1)
    decoding = DecodingSettings(int(beam_size), int(max_length), float(length_penalty))
    kept = _kept_attention(model, attention_maps, data.encoder, len(data.image_ids))

    start = time.perf_counter()
    captions, attention = _decode(model, data, decoding, kept, batch_size=batch_size, progress=progress, split=split)
    decode_seconds = time.perf_counter() - start
    candidates = dict(zip(data.image_ids, captions, strict=True))

    start = time.perf_counter()
    scores = evaluate(candidates, data.references, metrics=metrics, tokenizer=tokenizer)
    score_seconds = time.perf_counter() - start
    return EvaluationResult(
        model_path=model_path,
        data_path=data_path,
        split=split,
        encoder=data.encoder,
        image_ids=data.image_ids,
        image_paths=data.image_paths,
        candidates=candidates,
        references=data.references,
        scores=scores,
        stats=caption_stats(candidates, data.training_captions),
        decoding=decoding,
        tokenizer=tokenizer,
        decode_seconds=decode_seconds,
        score_seconds=score_seconds,
        attention=attention,
    )


@dataclass(frozen=True)
class _SplitData:
    """What evaluating a split reads from a prepared file.

    Attributes:
        encoder: the CNN that made the file's features.
        features: (M, D) pooled features, or (M, L, D) grids for a model that reads the grid.
        image_ids: the M photos, in the order of the feature rows.
        image_paths: where each photo is.
        references: {image id: [human captions]}.
        training_captions: the human captions of the file's train split, None without one.
        max_words: words kept per caption when the file was prepared.
    """

    encoder: str
    features: np.ndarray
    image_ids: list[str]
    image_paths: list[Path]
    references: dict[str, list[str]]
    training_captions: list[str] | None
    max_words: int


@dataclass(frozen=True)
class _KeptAttention:
    """Which photos keep where the model looked for each word: the first ``rows``, their weights laid over the
    encoder's ``grid_shape`` (h, w)."""

    rows: int
    grid_shape: tuple[int, int]


def _read_split(data_path: Path, split: str, model: CaptionModel) -> _SplitData:
    """The split's features for ``model``, its photos and their human captions."""
    with open_store(data_path) as store:
        # (M, L, D) float16 grids (cast batch by batch by the search) or (M, D) pooled.
        features = store.load_grid(split) if model.reads_grid else store.load_split(split).features
        references = store.load_references(split)
        image_ids = list(references)  # in the order of the feature rows
        row = {image_id: i for i, image_id in enumerate(store.image_ids)}
        data = _SplitData(
            encoder=store.encoder,
            features=features,
            image_ids=image_ids,
            image_paths=store.image_paths([row[image_id] for image_id in image_ids]),
            references=references,
            training_captions=_training_captions(store),
            max_words=store.max_length,
        )
    return data


def _training_captions(store: Store) -> list[str] | None:
    """The human captions of the file's train split (None without one): copies of them are counted."""
    if not store.splits().get(TRAIN_SPLIT, {}).get("done"):
        return None
    # allow_partial: the photos whose features are written are the ones a model can have been trained on.
    return [
        caption for captions in store.load_references(TRAIN_SPLIT, allow_partial=True).values() for caption in captions
    ]


def _kept_attention(model: CaptionModel, wanted: int | None, encoder: str, photos: int) -> _KeptAttention | None:
    """Which photos keep their attention weights: the first ``wanted`` (None: all); None when none do, because
    ``wanted`` is 0, the model does not attend, or rnncap cannot lay the weights over the photos (an encoder
    whose grid it does not know, with a warning)."""
    if wanted is not None and (not isinstance(wanted, int | np.integer) or wanted < 0):
        raise ValueError(f"attention_maps must be a number of photos >= 0 or None for all, got {wanted!r}")
    if not model.attends or wanted == 0:
        return None
    spec = known_spec(encoder)
    if spec is None or spec.grid_cells != model.feature_shape[0]:
        grid = "an unknown grid" if spec is None else f"a {spec.grid_shape[0]} x {spec.grid_shape[1]} grid"
        warnings.warn(
            f"no attention maps: the features come from {encoder!r}, {grid}, over which rnncap cannot draw the "
            f"model's {model.feature_shape[0]} attention weights",
            stacklevel=3,
        )
        return None
    return _KeptAttention(photos if wanted is None else min(int(wanted), photos), spec.grid_shape)


def _decode(
    model: CaptionModel,
    data: _SplitData,
    decoding: DecodingSettings,
    kept: _KeptAttention | None,
    *,
    batch_size: int,
    progress: bool | None,
    split: str,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """The M captions of the split and {image id: (T, h, w) attention maps} of the photos ``kept`` names."""
    captions: list[str] = []
    attention: dict[str, np.ndarray] = {}
    batches = search_batches(
        model,
        data.features,
        decoding.beam_size,
        decoding.max_length,
        decoding.length_penalty,
        batch_size=batch_size,
        attention_rows=0 if kept is None else kept.rows,
        progress=progress,
        desc=f"captioning {split}",
    )
    for ids, weights in batches:
        first = len(captions)
        captions += decode_captions(ids, model.idx_to_word)  # (B, max_length) ids -> B strings
        if kept is not None and weights is not None:  # weights: (B, max_length, L), for the batches that hold kept rows
            for i, (_, maps) in enumerate(grid_maps(model, ids, weights, kept.grid_shape), start=first):
                if i < kept.rows:
                    attention[data.image_ids[i]] = maps
    return captions, attention
