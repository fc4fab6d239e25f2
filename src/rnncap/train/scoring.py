"""Scorers: what chooses the best epoch of a run, and whether it is still getting better.

After every epoch the :class:`~rnncap.train.Trainer` asks its scorer for one number: :class:`ValLossScorer`
returns the validation loss (lower is better), :class:`MetricScorer` calls a ``score_fn(model)`` such as the BLEU or
CIDEr of captions written for the validation photos (``rnncap.apps.fit.greedy_scorer``). A run without a scorer
keeps its last epoch and never stops early.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from rnncap.checks import is_real

if TYPE_CHECKING:
    from rnncap.models.base import CaptionModel

ScoreFn = Callable[[Any], float | Mapping[str, float]]
"""``score_fn(model)``: one number, or several by name (``{"BLEU-4": .., "CIDEr": ..}``)."""


class Score(NamedTuple):
    """What a scorer found after one epoch."""

    value: float  # the number that chooses the best epoch
    metrics: dict[str, float] | None  # every number a score_fn returned by name, or None


class Scorer(ABC):
    """Scores the model after an epoch; see the module docstring.

    Attributes:
        name: what chooses the best epoch, as checkpoints record it ("val_loss" or "score_fn").
        key: the entry of a score_fn's named results that chooses, or None.
        higher_is_better: whether a larger score is better.
        label: what the score is called in progress bars and plots; None: the validation loss, shown as such.
    """

    name: ClassVar[str]
    key: str | None = None
    higher_is_better: bool = False
    label: str | None = None

    @abstractmethod
    def score(self, model: CaptionModel, epoch: int, val_loss: float | None) -> Score:
        """Score ``model`` after epoch ``epoch`` (from 1), whose validation loss the trainer has computed.

        Raises:
            ValueError: the score is not a finite number.
        """

    def better(self, score: float, best: float | None) -> bool:
        """Whether ``score`` beats ``best`` (None: nothing yet); equal is not better, so the first best stays."""
        return best is None or (score > best if self.higher_is_better else score < best)


class ValLossScorer(Scorer):
    """The mean validation loss per caption, lower is better: the trainer's default with validation data."""

    name = "val_loss"

    def score(self, model: CaptionModel, epoch: int, val_loss: float | None) -> Score:
        if val_loss is None:
            raise ValueError("the validation-loss scorer needs validation data")
        return Score(val_loss, None)


class MetricScorer(Scorer):
    """Calls ``score_fn(model)`` after every epoch, e.g. the BLEU-4 of sampled captions.

    Args:
        score_fn: returns a number, or several by name: all go into the history, ``key`` chooses.
        higher_is_better: True for BLEU or CIDEr, False for a loss; required.
        key: with a ``score_fn`` that returns a mapping, the entry that chooses the best epoch.
    """

    name = "score_fn"

    def __init__(self, score_fn: ScoreFn, higher_is_better: bool | None, key: str | None = None) -> None:
        if not callable(score_fn):
            raise ValueError(f"score_fn must be callable as score_fn(model) -> float, got {score_fn!r}")
        if higher_is_better is None:
            raise ValueError("with a score_fn, say whether higher_is_better (True for BLEU/CIDEr, False for a loss)")
        self.score_fn, self.key, self.higher_is_better = score_fn, key, bool(higher_is_better)
        self.label = key or "score"

    def score(self, model: CaptionModel, epoch: int, val_loss: float | None) -> Score:
        result = self.score_fn(model)
        metrics = None
        if isinstance(result, Mapping):
            if self.key is None or self.key not in result:
                raise ValueError(
                    f"score_fn returned {sorted(result)} after epoch {epoch}; score_key {self.key!r} must "
                    "name one of them"
                )
            metrics = {str(name): float(value) for name, value in result.items() if is_real(value)}
            result = result[self.key]
        if not is_real(result) or not math.isfinite(result):
            raise ValueError(f"score_fn returned {result!r} after epoch {epoch}; it must return a finite number")
        return Score(float(result), metrics)


def choose_scorer(
    has_val: bool,
    scorer: Scorer | None = None,
    score_fn: ScoreFn | None = None,
    higher_is_better: bool | None = None,
    score_key: str | None = None,
) -> Scorer | None:
    """The scorer of a run from the Trainer's arguments: ``scorer``, else a :class:`MetricScorer` of
    ``score_fn``, else the validation loss when there is validation data (``has_val``), else None.

    Raises:
        ValueError: arguments that contradict each other.
    """
    if scorer is not None:
        if score_fn is not None or higher_is_better is not None or score_key is not None:
            raise ValueError("pass either a scorer or a score_fn (with higher_is_better and score_key), not both")
        if not isinstance(scorer, Scorer):
            raise ValueError(f"scorer must be a Scorer, got {type(scorer).__name__}")
        if isinstance(scorer, ValLossScorer) and not has_val:
            raise ValueError("the validation-loss scorer needs validation data")
        return scorer
    if score_fn is not None:
        return MetricScorer(score_fn, higher_is_better, score_key)
    if score_key is not None:
        raise ValueError("score_key names an entry of a score_fn's result: pass the score_fn too")
    if not has_val:
        return None
    if higher_is_better:
        raise ValueError("the default score is the validation loss, where lower is better")
    return ValLossScorer()
