"""Every hypothesis a beam search ends with, and its log-probability: what a server shows beside the best caption.

:func:`rnncap.decode.beam_search` returns each photo's best hypothesis only. :func:`beam_candidates` runs the same
search through the same bookkeeping (``rnncap.decode``'s beams: same ranking, same ties, so its first candidate is
``beam_search``'s caption) and keeps all B hypotheses with their total log-probabilities, and the attention weights
of the best. With ``beam_size`` 1 it is greedy search, with the caption's log-probability.

A candidate's log-probability is the sum over its tokens, ``<END>`` included, of ``log p(token | photo, words
before)`` under the model, with ``<NULL>``, ``<START>`` and ``<UNK>`` left out of the choice as the searches leave
them out (not renormalised): higher is likelier; captions of different lengths compare as the beam compared them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncap.apps.caption_results import AttendedCaption
from rnncap.checks import check_positive_int
from rnncap.decode import Decodable, _Beams, _follow_parents, _forbid_special_tokens, caption_words


@dataclass(frozen=True)
class Candidates:
    """What :func:`beam_candidates` finds for N photos and B beams.

    Attributes:
        tokens: (N, B, max_length) int32 ids of each hypothesis, best first, ``<NULL>`` after ``<END>``.
        logprobs: (N, B) float64 total log-probabilities; -inf for a beam that never held a hypothesis.
        best: (N,) the best beam of each photo (0: the beams are kept best first).
        weights: (N, max_length, L) attention weights of each photo's best hypothesis, or None.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    best: np.ndarray
    weights: np.ndarray | None


def beam_candidates(
    model: Decodable, features: np.ndarray, beam_size: int, max_length: int, *, return_attention: bool = False
) -> Candidates:
    """Beam search over (N, ...) ``features`` that keeps every beam's hypothesis and score (see the module docstring).

    Args:
        model: a captioning model (the contract of :mod:`rnncap.decode`).
        features: (N, ...) image features, as the model's ``init_state`` takes them.
        beam_size: hypotheses kept per photo; 1 is greedy search.
        max_length: the most tokens per caption, ``<END>`` included.
        return_attention: also keep the (N, max_length, L) weights of the best hypotheses (attending models only).
    """
    check_positive_int("beam_size", beam_size)
    check_positive_int("max_length", max_length)
    if return_attention and not model.attends:
        raise ValueError(f"{type(model).__name__} has no attention weights to return (it does not attend)")
    B = int(beam_size)
    state = model.init_state(features)
    N = state[0].shape[0]
    state = model.select_state(state, np.repeat(np.arange(N), B))  # beam b of photo n at row n*B + b
    beams = _Beams.start(N, B, max_length, model, 0.0)
    history = None  # (N, B, max_length, L) once L is known
    words = np.full(N * B, model.start_id, dtype=np.int32)
    for t in range(max_length):
        log_probs, state = model.step(state, words)
        log_probs = _forbid_special_tokens(model, log_probs.astype(np.float64))
        parent, words_nb, was_finished = beams.advance(log_probs.reshape(N, B, -1), t)
        state = model.select_state(state, (parent + np.arange(N)[:, None] * B).ravel())
        words = words_nb.ravel().astype(np.int32)
        if return_attention:
            weights = model.attention_weights(state).reshape(N, B, -1)  # (N, B, L): the parents' step t
            if history is None:
                history = np.zeros((N, B, max_length, weights.shape[2]), dtype=weights.dtype)
            history = _follow_parents(history, parent, t, np.where(was_finished[:, :, None], 0, weights))
        if beams.finished.all():
            break
    best = beams.best()
    kept = None if history is None else history[np.arange(N), best]
    return Candidates(beams.tokens, beams.scores, best, kept)


@dataclass(frozen=True)
class Candidate:
    """One hypothesis of the beam: its words joined by spaces and its total log-probability."""

    caption: str
    logprob: float


@dataclass(frozen=True, eq=False)
class DetailedCaption:
    """Everything a server says about one photo (:meth:`rnncap.apps.captioner.Captioner.caption_detailed`).

    Attributes:
        caption: the best caption (the one :meth:`~rnncap.apps.captioner.Captioner.caption_many` gives).
        candidates: every hypothesis the beam ended with, best first (the first is ``caption``).
        attention: where the model looked for each word of ``caption``, or None (not asked for).
        ms: milliseconds the photo's batch took, preprocessing, encoding and search (photos captioned together
            share one number).
    """

    caption: str
    candidates: tuple[Candidate, ...]
    attention: AttendedCaption | None
    ms: float


def candidate_lists(candidates: Candidates, idx_to_word: list[str], end_id: int) -> list[tuple[Candidate, ...]]:
    """Each photo's hypotheses as words, best first, leaving out beams that never held one: N tuples."""
    N, B, T = candidates.tokens.shape
    captions = caption_words(candidates.tokens.reshape(N * B, T), idx_to_word, end_id)  # N*B word tuples
    logprobs = candidates.logprobs.reshape(N * B).tolist()
    return [
        tuple(
            Candidate(" ".join(captions[n * B + b]), logprobs[n * B + b])
            for b in np.argsort(-candidates.logprobs[n], kind="stable").tolist()
            if np.isfinite(logprobs[n * B + b])
        )
        for n in range(N)
    ]
