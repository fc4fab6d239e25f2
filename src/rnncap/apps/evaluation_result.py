"""What evaluating a model on a split found, and the ways to show it: JSON, an HTML gallery, words.

:func:`rnncap.apps.evaluation.evaluate_model` makes an :class:`EvaluationResult`; ``rnncap evaluate`` prints it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rnncap import __version__
from rnncap.encoders.preprocess import load_images
from rnncap.encoders.specs import get_spec
from rnncap.metrics import Scores
from rnncap.report.attention_maps import MAPS_LABEL, draw_attention
from rnncap.report.gallery import GalleryEntry, write_gallery


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
            (see ``attention_maps`` of :func:`rnncap.apps.evaluation.evaluate_model`), empty for other models.
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
                extra_label=MAPS_LABEL,
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


def describe_stats(stats: Mapping[str, float]) -> dict[str, str]:
    """:func:`rnncap.metrics.caption_stats` in words, label -> text: ``{"distinct captions": "67.3% of 1,000"...}``."""
    described = {
        "distinct captions": f"{stats['distinct']:.1%} of {int(stats['captions']):,}",
        "words used": f"{int(stats['vocabulary']):,}",
        "mean length": f"{stats['mean_length']:.1f} words",
        "words repeated back to back": f"{stats['stutter']:.1%}",
        "cut off mid-phrase": f"{stats['cut_off']:.1%}",
    }
    if "in_training" in stats:
        described["copied from training captions"] = f"{stats['in_training']:.1%}"
    return described
