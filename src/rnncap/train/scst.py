"""Self-critical sequence training (Rennie et al. 2017): fine-tune a captioner for CIDEr-D with REINFORCE.

One step on a batch of N photos (:func:`scst_step`):

1. draw K captions per photo from the model (:func:`rnncap.sampling.sample_captions`, temperature 1, no dropout);
2. score each with CIDEr-D against its photo's references (:class:`rnncap.train.rewards.CiderD`, document
   frequencies of the training references, counted once);
3. subtract a baseline: ``"greedy"``, the reward of the photo's greedy caption (the paper's self-critical
   baseline), or ``"mean"``, the mean reward of the photo's other K - 1 samples (Luo 2020, "A Better Variant of
   Self-Critical Sequence Training"; no greedy decoding needed);
4. the gradient of the surrogate loss ``-sum_i A_i * sum_t log q(w_it) / (N K)`` over the sampled tokens, which
   is the model's own teacher-forced loss with per-caption weights (``model.loss(..., caption_weights=A)``): the
   forward pass is run again over the samples, so the backward reuses every gradient-checked layer.

Dropout: the sampler and the surrogate loss both run without it, so that the loss differentiates the very
distribution the samples came from (self-critical.pytorch samples in train mode with dropout and backpropagates
through that same forward; here the fine-tune's small learning rate needs no extra regularisation, and the
re-run forward could not replay the sampler's masks otherwise).

:class:`rnncap.train.Trainer` runs it when ``TrainConfig.scst`` is an :class:`SCSTConfig`
(:func:`scst_config` builds both); each epoch is one pass over the training photos in a fresh order.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from rnncap.decode import greedy_search
from rnncap.models.base import CaptionModel
from rnncap.sampling import sample_captions
from rnncap.train.config import SCSTConfig, TrainConfig
from rnncap.train.data import CaptionData
from rnncap.train.rewards import CiderD

SCST_HISTORY = ("iteration_reward", "iteration_baseline", "train_reward", "train_baseline")
"""The history lists an SCST run adds: per step and per epoch (means over photos), the mean sample reward and
the mean baseline (CIDEr-D, 0-10 scale)."""

__all__ = [
    "SCST_BATCH_SIZE",
    "SCST_HISTORY",
    "SCST_LEARNING_RATE",
    "SCSTConfig",
    "StepStats",
    "advantages",
    "reward_index",
    "scst_config",
    "scst_step",
    "with_start",
]


class StepStats(NamedTuple):
    """What one SCST step measured: the mean sample reward and the mean baseline, in CIDEr-D (0-10 scale)."""

    reward: float
    baseline: float


SCST_LEARNING_RATE = 5e-5
"""The fine-tune's Adam learning rate (self-critical.pytorch's), constant (``lr_decay=1``)."""
SCST_BATCH_SIZE = 50
"""Photos per SCST update (self-critical.pytorch's batch of 50 photos x 5 samples)."""


def scst_config(
    base: TrainConfig | None = None, *, learning_rate: float = SCST_LEARNING_RATE, **fields: Any
) -> TrainConfig:
    """A TrainConfig for self-critical fine-tuning: ``base`` (default ``TrainConfig()``) with an
    :class:`SCSTConfig` of the ``fields`` that are its own (``num_samples``, ``baseline``, ``max_length``,
    ``count_end``), Adam at ``learning_rate``, :data:`SCST_BATCH_SIZE` photos per update and no learning rate
    decay unless the other ``fields`` (any TrainConfig field: ``num_epochs``, ``batch_size``, ``seed`` ...) say
    otherwise."""
    base = TrainConfig() if base is None else base
    own = {item.name for item in dataclass_fields(SCSTConfig)}
    settings = SCSTConfig(**{name: value for name, value in fields.items() if name in own})
    train: dict[str, Any] = {"lr_decay": 1.0, "batch_size": SCST_BATCH_SIZE}
    train.update((name, value) for name, value in fields.items() if name not in own)
    return replace(base, scst=settings, optim_config={"learning_rate": learning_rate}, **train)


def reward_index(train: CaptionData, vocab_size: int, end_id: int, settings: SCSTConfig) -> CiderD:
    """The CIDEr-D index of a training split's captions: each photo's references are its own captions."""
    return CiderD.from_captions(
        train.captions, train.image_idxs, len(train.features), vocab_size, end_id, count_end=settings.count_end
    )


def with_start(ids: np.ndarray, start_id: int) -> np.ndarray:
    """(M, T) sampled ids -> (M, T + 1) captions ``<START> ids``, as the teacher-forced loss reads them."""
    return np.concatenate([np.full((ids.shape[0], 1), start_id, dtype=ids.dtype), ids], axis=1)


def advantages(
    rewards: np.ndarray, num_samples: int, baseline: str, greedy_rewards: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's advantage and baseline, (N*K,) each, from its (N*K,) reward (photo n's samples at rows
    ``n*K .. n*K + K - 1``): ``"greedy"`` subtracts the photo's (N,) ``greedy_rewards``; ``"mean"`` the mean of
    the photo's other K - 1 rewards (needs K >= 2)."""
    K = int(num_samples)
    per_photo = rewards.reshape(-1, K)  # (N, K)
    if baseline == "greedy":
        if greedy_rewards is None:
            raise ValueError("the greedy baseline needs the greedy captions' rewards")
        base = np.repeat(np.asarray(greedy_rewards, dtype=np.float64), K)
    elif baseline == "mean":
        if K < 2:
            raise ValueError("the mean baseline needs at least 2 samples per photo (num_samples >= 2)")
        base = ((per_photo.sum(axis=1, keepdims=True) - per_photo) / (K - 1)).ravel()
    else:
        raise ValueError(f"baseline must be 'greedy' or 'mean', got {baseline!r}")
    return rewards - base, base


def scst_step(
    model: CaptionModel,
    features: np.ndarray,
    images: np.ndarray,
    index: CiderD,
    settings: SCSTConfig,
    rng: np.random.Generator,
) -> tuple[float, dict[str, np.ndarray], StepStats]:
    """One self-critical gradient on N photos (see the module docstring).

    Args:
        model: the captioner.
        features: (N, *feature_shape) the photos' features.
        images: (N,) the photos' indices in ``index`` (whose references score them).
        index: the CIDEr-D rewards.
        settings: samples per photo, baseline, caption length.
        rng: draws the samples.

    Returns:
        the surrogate loss, the gradients of every parameter (keyed like ``model.params``) and the step's stats.
    """
    K = settings.num_samples
    samples = sample_captions(model, features, K, settings.max_length, rng)
    rewards = index.scores(samples.ids, images[samples.images])
    greedy_rewards = None
    if settings.baseline == "greedy":
        # The caption the model is judged by (its blocked_endings applied): a baseline drawn apart from the samples,
        # so the gradient stays unbiased whichever caption it is.
        greedy = greedy_search(model, features, settings.max_length)
        greedy_rewards = index.scores(greedy, images)
    advantage, base = advantages(rewards, K, settings.baseline, greedy_rewards)
    captions = with_start(samples.ids, model.start_id)
    loss, grads = model.loss(features[samples.images], captions, caption_weights=advantage)
    return loss, grads, StepStats(float(rewards.mean()), float(base.mean()))
