"""Every hypothesis a beam search ends with, as words, and its log-probability: what a server shows beside the best
caption.

:func:`rnncap.decode.beam_candidates` is the search of :func:`~rnncap.decode.beam_search` keeping all B hypotheses
with their total log-probabilities and the attention weights of the best; :func:`candidate_lists` turns them into
words, best first. With ``beam_size`` 1 it is greedy search, with the caption's log-probability.

A candidate's log-probability is the sum over its tokens, ``<END>`` included, of ``log p(token | photo, words
before)`` under the model, with ``<NULL>``, ``<START>`` and ``<UNK>`` left out of the choice as the searches leave
them out (not renormalised): higher is likelier; captions of different lengths compare as the beam compared them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncap.apps.caption_results import AttendedCaption
from rnncap.decode import BeamCandidates, caption_words


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


def candidate_lists(candidates: BeamCandidates, idx_to_word: list[str], end_id: int) -> list[tuple[Candidate, ...]]:
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
