"""Multinomial sampling of captions with their log-probabilities: what self-critical training draws
(:mod:`rnncap.train.scst`), for any model of the decoding contract (:class:`rnncap.decode.Decodable`).

Like the searches, the sampler never draws the :func:`rnncap.decode.never_drawn` ids (``<NULL>``, ``<START>``,
``<UNK>``); unlike them it ignores a model's ``blocked_endings``: it draws from the model's distribution as it is,
the one whose gradient the surrogate loss of self-critical training takes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rnncap.backend import array_module, to_numpy
from rnncap.checks import check_positive_int
from rnncap.decode import Decodable, never_drawn


class Samples(NamedTuple):
    """What :func:`sample_captions` draws: K captions for each of N photos, photo n's at rows ``n*K .. n*K + K - 1``.

    Attributes:
        ids: (N*K, max_length) int32 token ids, ``<NULL>`` after ``<END>``.
        log_probs: (N*K, max_length) the log-probability of each drawn token under the model (``<END>``
            included), 0 after it; a row's sum is its caption's log-probability.
        images: (N*K,) int64 the photo (row of ``features``) of each caption.
    """

    ids: np.ndarray
    log_probs: np.ndarray
    images: np.ndarray


def sample_captions(
    model: Decodable, features: np.ndarray, num_samples: int, max_length: int, rng: np.random.Generator
) -> Samples:
    """Draw ``num_samples`` captions per photo from the model's distribution (temperature 1), batched.

    Every step draws one token per row by inverting the cumulative distribution at a uniform number from ``rng``
    (one number per row and step: a run is a pure function of the generator's state). ``<NULL>``, ``<START>`` and
    ``<UNK>`` are never drawn (as in the searches: the distribution is renormalised without them); a row that
    drew ``<END>`` stops (``<NULL>`` after it, log-probability 0). The model runs without dropout (``step`` has
    none), so that the teacher-forced loss over the same ids computes the very log-probabilities drawn from.

    Args:
        model: a captioning model; features: (N, ...) as its ``init_state`` takes them.
        num_samples: K >= 1; max_length: the most tokens per caption, ``<END>`` included.
        rng: the generator that draws.

    Returns:
        :class:`Samples` of N*K rows, host arrays. The uniform numbers are drawn on the host and move to the
        model's device, so that a seeded run draws the same captions on either device (up to rounding).
    """
    check_positive_int("num_samples", num_samples)
    check_positive_int("max_length", max_length)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    state = model.init_state(features)
    xp = array_module(state[0])
    N, K = state[0].shape[0], int(num_samples)
    images = np.repeat(np.arange(N), K)
    state = model.select_state(state, xp.asarray(images))  # photo n's K rows together, as a beam's
    ids = xp.full((N * K, max_length), model.null_id, dtype=np.int32)
    log_probs = xp.zeros((N * K, max_length), dtype=np.float64)
    words = xp.full(N * K, model.start_id, dtype=np.int32)
    finished = xp.zeros(N * K, dtype=bool)
    rows, never = xp.arange(N * K), xp.asarray(never_drawn(model))
    for t in range(max_length):
        step_log_probs, state = model.step(state, words)
        probs = xp.exp(step_log_probs.astype(np.float64))  # (N*K, V)
        V = probs.shape[1]
        probs[:, never] = 0.0
        cdf = xp.cumsum(probs, axis=1)
        total = cdf[:, -1]  # the mass of the drawable words: q = p / total
        uniform = xp.asarray(rng.random(N * K))  # drawn on the host: the same numbers on either device
        drawn = (cdf <= uniform[:, None] * total[:, None]).sum(axis=1)
        # Rounding can leave the draw past the last word (or on a word of no mass): take the most likely then.
        off = (drawn >= V) | (probs[rows, xp.minimum(drawn, V - 1)] == 0)
        drawn = xp.where(off, probs.argmax(axis=1), drawn).astype(np.int32)
        ids[:, t] = xp.where(finished, model.null_id, drawn)
        log_probs[:, t] = xp.where(finished, 0.0, step_log_probs[rows, drawn] - xp.log(total))
        finished |= drawn == model.end_id
        words = drawn
        if finished.all():  # (a GPU syncs here, once a step)
            break
    return Samples(to_numpy(ids), to_numpy(log_probs), images.astype(np.int64))
