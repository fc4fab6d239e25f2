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
gallery's), and the gallery draws those attention maps under the photos.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rnncap import __version__
from rnncap.apps.compat import check_features, grid_maps, known_spec, model_encoder
from rnncap.data.store import Store, open_store
from rnncap.decode import search_batches
from rnncap.encoders.preprocess import load_images
from rnncap.encoders.specs import get_spec
from rnncap.metrics import METRICS, Scores, caption_stats, evaluate
from rnncap.models import CaptionModel, load_model
from rnncap.report.attention_maps import draw_attention
from rnncap.report.gallery import GalleryEntry, write_gallery
from rnncap.text import decode_captions

TRAIN_SPLIT = "train"  # the split whose captions the model learned; copies of them are counted


@dataclass(frozen=True)
class DecodingSettings:
    """How captions were decoded.

    Attributes:
        beam_size: hypotheses kept per photo; 1 is greedy search.
        max_length: the most tokens generated per caption, ``<END>`` included.
        length_penalty: the beam's length exponent (0 ranks by total log-probability); unused by greedy search.
    """

    beam_size: int
    max_length: int
    length_penalty: float

    def describe(self) -> str:
        """One line, e.g. ``"beam search (beam 3, length penalty 0), at most 17 tokens"``."""
        if self.beam_size == 1:
            method = "greedy search"
        else:
            method = f"beam search (beam {self.beam_size}, length penalty {self.length_penalty:g})"
        return f"{method}, at most {self.max_length} tokens"


@dataclass
class EvaluationResult:
    """A model's captions of one split with their scores.

    Attributes:
        model_path: the model file, or None when a model object was evaluated.
        data_path: the prepared data file.
        split: the split evaluated.
        encoder: the CNN that made the file's features.
        image_ids: the M photos, in the file's order.
        image_paths: where each photo is (it may be missing if the data set moved).
        candidates: {image id: generated caption}.
        references: {image id: [human captions]}.
        scores: on the 0-1 scale, METEOR possibly in ``scores.skipped``.
        stats: :func:`rnncap.metrics.caption_stats` of the captions; ``in_training`` when the file has a train split.
        decoding: the decoding settings.
        tokenizer: the tokenizer the metrics used.
        decode_seconds: time spent writing the captions.
        score_seconds: time spent scoring them.
        attention: {image id: (T, h, w) weights}, where an attention model looked for each of the T words of the
            caption (``candidates[image_id].split()``) over the encoder's h x w grid; for the first photos only
            (see ``attention_maps`` of :func:`evaluate_model`), empty for other models.
    """

    model_path: str | None
    data_path: Path
    split: str
    encoder: str
    image_ids: list[str]
    image_paths: list[Path]
    candidates: dict[str, str]
    references: dict[str, list[str]]
    scores: Scores
    stats: dict[str, float]
    decoding: DecodingSettings
    tokenizer: str
    decode_seconds: float
    score_seconds: float
    attention: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def photos_per_second(self) -> float:
        """Decoding speed."""
        return len(self.image_ids) / max(self.decode_seconds, 1e-9)  # a tiny split can decode within the clock's tick

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready values; scores stay on the 0-1 scale, which the ``scale`` key states."""
        return {
            "rnncap_version": __version__,
            "model": self.model_path,
            "data": str(self.data_path),
            "split": self.split,
            "encoder": self.encoder,
            "scale": "0-1",
            "scores": {name: float(value) for name, value in self.scores.items()},
            "skipped": dict(self.scores.skipped),
            "stats": dict(self.stats),
            "decoding": asdict(self.decoding),
            "tokenizer": self.tokenizer,
            "seconds": {"decode": self.decode_seconds, "score": self.score_seconds},
            "captions": self.candidates,
        }

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_json` to ``path`` (its folder is created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def details(self) -> dict[str, str]:
        """What was evaluated and how, as label -> text (for printing and for the gallery)."""
        return {
            "model": self.model_path or "(a model object)",
            "data": f"{self.data_path}, split {self.split} ({len(self.image_ids):,} photos, {self.encoder} features)",
            "decoding": self.decoding.describe(),
            "tokenizer": self.tokenizer,
        }

    def write_gallery(self, path: str | os.PathLike, size: int | None = 100, title: str | None = None) -> Path:
        """An HTML page of the first ``size`` photos (None: all) with their captions, scores and habits on top.

        The photos are read from :attr:`image_paths`; missing ones show as placeholders. A photo with
        :attr:`attention` weights shows its attention map under it, drawn over the square the encoder read.
        """
        if size is not None and size < 1:
            raise ValueError(f"gallery size must be a positive number of photos or None for all, got {size}")
        entries = [
            GalleryEntry(
                photo,
                self.candidates[image_id],
                self.references[image_id],
                label=image_id,
                extra=self.attention_map(image_id),
                extra_label="where the model looked for each word",
            )
            for image_id, photo in zip(self.image_ids[:size], self.image_paths[:size], strict=True)
        ]
        return write_gallery(
            path,
            entries,
            title=title or f"{Path(self.model_path or 'model').name} on {self.data_path.name} {self.split}",
            scores=self.scores,
            habits=describe_stats(self.stats),
            details=self.details(),
        )

    def attention_map(self, image_id: str) -> Image.Image | None:
        """The attention map of a photo, drawn by :func:`rnncap.report.attention_maps.draw_attention`; None when its
        weights were not kept or its photo cannot be read."""
        weights = self.attention.get(image_id)
        if weights is None:
            return None
        spec = get_spec(self.encoder)  # known: evaluate_model keeps weights only for encoders it knows
        photo = self.image_paths[self.image_ids.index(image_id)]
        [(_, square, _)] = load_images([(0, str(photo))], spec.image_size, spec.crop_fraction)  # None: unreadable
        if square is None:
            return None
        return draw_attention(square, self.candidates[image_id].split(), weights)


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

    Returns:
        The captions, their scores on the 0-1 scale and their habits.

    Raises:
        StoreError: the file is missing or damaged, has no such split, or the split's features are not all there.
        ModelFileError: ``model`` names a missing or corrupt model file.
        ValueError: the model reads features of another encoder or size than the file holds; a bad setting.

    Warns:
        UserWarning: the model does not name its encoder; attention maps were asked for, but rnncap does not know
            how the file's encoder lays out its grid.
    """
    model_path = None
    if isinstance(model, str | os.PathLike):
        model_path = str(model)
        model = load_model(model)
    model_name = model_path or f"the {type(model).__name__}"
    data_path = Path(data_path)
    with open_store(data_path) as store:
        features = _load_features(store, split, model)
        references = store.load_references(split)
        image_ids = list(references)  # in the order of the feature rows
        row = {image_id: i for i, image_id in enumerate(store.image_ids)}
        image_paths = store.image_paths([row[image_id] for image_id in image_ids])
        encoder = store.encoder
        training_captions = _training_captions(store)
        if max_length is None:
            # The model's own length (what `rnncap caption` uses), else room for the file's longest caption.
            max_length = model.metadata.get("max_length", store.max_length + 1)
    model_encoder(model, encoder, source=str(data_path), model_name=model_name)
    check_features(model, features, str(data_path), model_name=model_name)
    decoding = DecodingSettings(int(beam_size), int(max_length), float(length_penalty))

    keep = _attention_rows(model, attention_maps, encoder, len(image_ids))
    grid_shape = get_spec(encoder).grid_shape if keep else None

    start = time.perf_counter()
    captions: list[str] = []
    attention: dict[str, np.ndarray] = {}
    batches = search_batches(
        model,
        features,
        decoding.beam_size,
        decoding.max_length,
        decoding.length_penalty,
        batch_size=batch_size,
        attention_rows=keep,
        progress=progress,
        desc=f"captioning {split}",
    )
    for ids, weights in batches:
        first = len(captions)
        captions += decode_captions(ids, model.idx_to_word)  # (B, max_length) ids -> B strings
        if weights is not None:
            for i, (_, maps) in enumerate(grid_maps(model, ids, weights, grid_shape), start=first):
                if i < keep:
                    attention[image_ids[i]] = maps
    decode_seconds = time.perf_counter() - start
    candidates = dict(zip(image_ids, captions, strict=True))

    start = time.perf_counter()
    scores = evaluate(candidates, references, metrics=metrics, tokenizer=tokenizer)
    score_seconds = time.perf_counter() - start
    return EvaluationResult(
        model_path=model_path,
        data_path=data_path,
        split=split,
        encoder=encoder,
        image_ids=image_ids,
        image_paths=image_paths,
        candidates=candidates,
        references=references,
        scores=scores,
        stats=caption_stats(candidates, training_captions),
        decoding=decoding,
        tokenizer=tokenizer,
        decode_seconds=decode_seconds,
        score_seconds=score_seconds,
        attention=attention,
    )


def describe_stats(stats: Mapping[str, float]) -> dict[str, str]:
    """:func:`rnncap.metrics.caption_stats` in words, label -> text: ``{"distinct captions": "67.3% of 1,000"...}``."""
    described = {
        "distinct captions": f"{stats['distinct']:.1%} of {int(stats['captions']):,}",
        "words used": f"{int(stats['vocabulary']):,}",
        "mean length": f"{stats['mean_length']:.1f} words",
    }
    if "in_training" in stats:
        described["copied from training captions"] = f"{stats['in_training']:.1%}"
    return described


def _training_captions(store: Store) -> list[str] | None:
    """The human captions of the file's train split (None without one): copies of them are counted."""
    if not store.splits().get(TRAIN_SPLIT, {}).get("done"):
        return None
    # allow_partial: the photos whose features are written are the ones a model can have been trained on.
    return [
        caption for captions in store.load_references(TRAIN_SPLIT, allow_partial=True).values() for caption in captions
    ]


def _attention_rows(model: CaptionModel, wanted: int | None, encoder: str, photos: int) -> int:
    """How many of the first photos keep their attention weights: ``wanted`` (None: all), or 0 when the model does
    not attend or rnncap cannot lay the weights over the photos (an encoder whose grid it does not know)."""
    if wanted is not None and (not isinstance(wanted, int | np.integer) or wanted < 0):
        raise ValueError(f"attention_maps must be a number of photos >= 0 or None for all, got {wanted!r}")
    if not model.attends or wanted == 0:
        return 0
    spec = known_spec(encoder)
    if spec is None or spec.grid_cells != model.feature_shape[0]:
        grid = "an unknown grid" if spec is None else f"a {spec.grid_shape[0]} x {spec.grid_shape[1]} grid"
        warnings.warn(
            f"no attention maps: the features come from {encoder!r}, {grid}, over which rnncap cannot draw the "
            f"model's {model.feature_shape[0]} attention weights",
            stacklevel=3,
        )
        return 0
    return photos if wanted is None else min(int(wanted), photos)


def _load_features(store: Store, split: str, model: CaptionModel) -> np.ndarray:
    """The split's features for ``model``: (M, L, D) float16 grids (cast batch by batch) or (M, D) pooled."""
    if model.reads_grid:
        return store.load_grid(split)
    return store.load_split(split).features
