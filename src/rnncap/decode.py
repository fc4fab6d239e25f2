"""Greedy decoding and beam search, shared by every captioning model.

A model takes part through the contract of :class:`rnncap.models.base.CaptionModel` (typed here as the
:class:`Decodable` protocol, so that this module needs no model class): ``vocab_size``, the special ids,
``attends``, and

- ``init_state(features) -> state``: a tuple of arrays whose first axis is the batch;
- ``step(state, word_ids) -> (log_probs, state)``: feeds one (N,) batch of token ids and returns the (N, V)
  log-probabilities of the next token;
- ``select_state(state, rows) -> state``: the state of the hypotheses ``rows``. Beam search keeps each image's
  hypotheses together, image n's B beams at rows ``n*B .. n*B + B - 1``, so a model can keep per-image arrays (an
  attention model's feature grid) unrepeated in its state;
- ``attention_weights(state) -> (N, L)``: for a model that ``attends``, the attention weights of the step that
  returned ``state``, which the searches return with ``return_attention=True``.

The searches run where the model's state lives (its device, :mod:`rnncap.backend`: the arrays of ``init_state``
decide) and return host (NumPy) arrays: token ids, log-probabilities, attention weights.

Both searches are vectorised over the batch (and the beams): the only Python loop runs over time steps. Neither
ever emits ``<NULL>`` or ``<START>`` (padding and a prompt, not words), nor, for a model whose ``unk_id`` is not
None, ``<UNK>``: it stands for the rare words of the training captions, and a caption that says "a <UNK> on the
grass" tells its reader nothing (the Flickr8k model wrote one in 14% of its greedy dev captions). Nor does either
search emit ``<END>`` right after one of the model's ``no_end_after`` ids (its ``blocked_endings``: a caption never
ends on "the"); the sampler of self-critical training (:mod:`rnncap.sampling`) draws without that rule.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, NamedTuple, Protocol, cast, overload

import numpy as np
from tqdm.auto import tqdm

from rnncap.backend import array_module, is_array, to_numpy
from rnncap.checks import check_positive_int
from rnncap.text import decode_captions
from rnncap.train.data import read_ahead, take_rows

State = tuple[np.ndarray, ...]  # a decoder's recurrent state: arrays whose first axis is the hypotheses (or images)
Attended = tuple[np.ndarray, np.ndarray]  # (N, max_length) ids and their (N, max_length, L) attention weights


class Decodable(Protocol):
    """What the searches need of a model (see the module docstring)."""

    vocab_size: int
    null_id: int
    start_id: int
    end_id: int
    unk_id: int | None
    attends: bool
    idx_to_word: list[str]

    @property
    def no_end_after(self) -> tuple[int, ...]: ...

    def init_state(self, features: np.ndarray) -> State: ...
    def step(self, state: State, word_ids: np.ndarray) -> tuple[np.ndarray, State]: ...
    def select_state(self, state: State, rows: np.ndarray) -> State: ...
    def attention_weights(self, state: State) -> np.ndarray: ...


@overload
def greedy_search(
    model: Decodable, features: np.ndarray, max_length: int = ..., return_attention: Literal[False] = ...
) -> np.ndarray: ...
@overload
def greedy_search(
    model: Decodable, features: np.ndarray, max_length: int = ..., *, return_attention: Literal[True]
) -> Attended: ...
@overload
def greedy_search(
    model: Decodable, features: np.ndarray, max_length: int = ..., return_attention: bool = ...
) -> np.ndarray | Attended: ...
def greedy_search(
    model: Decodable, features: np.ndarray, max_length: int = 30, return_attention: bool = False
) -> np.ndarray | Attended:
    """Pick the most likely word at every step.

    Args:
        model: a captioning model (see the module docstring).
        features: (N, ...) image features, as the model's ``init_state`` takes them.
        max_length: the most tokens generated per caption, ``<END>`` included.
        return_attention: also return the attention weights behind every word (models with
            ``attention_weights`` only).

    Returns:
        (N, max_length) int32 token ids; after a caption's ``<END>`` the row holds ``<NULL>``. With
        ``return_attention``, also (N, max_length, L) weights, zero where the row holds ``<NULL>``. Host arrays.
    """
    check_positive_int("max_length", max_length)
    _check_attention(model, return_attention)
    state = model.init_state(features)
    xp = array_module(state[0])
    N = state[0].shape[0]
    captions = xp.full((N, max_length), model.null_id, dtype=np.int32)
    attention = None
    words = xp.full(N, model.start_id, dtype=np.int32)
    finished = xp.zeros(N, dtype=bool)
    forbidden = _forbidden_ids(model, xp)
    for t in range(max_length):
        log_probs, state = model.step(state, words)
        words = _forbid(log_probs, words, forbidden, model.end_id).argmax(axis=1).astype(np.int32)
        captions[:, t] = xp.where(finished, model.null_id, words)
        if return_attention:
            weights = model.attention_weights(state)  # (N, L)
            if attention is None:
                attention = xp.zeros((N, max_length, weights.shape[1]), dtype=weights.dtype)
            attention[:, t] = xp.where(finished[:, None], 0, weights)
        finished |= words == model.end_id
        if finished.all():  # (a GPU syncs here, once a step)
            break
    if not return_attention:
        return to_numpy(captions)
    assert attention is not None  # set at step 0 (max_length >= 1)
    return to_numpy(captions), to_numpy(attention)


@overload
def beam_search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = ...,
    max_length: int = ...,
    length_penalty: float = ...,
    return_attention: Literal[False] = ...,
) -> np.ndarray: ...
@overload
def beam_search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = ...,
    max_length: int = ...,
    length_penalty: float = ...,
    *,
    return_attention: Literal[True],
) -> Attended: ...
@overload
def beam_search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = ...,
    max_length: int = ...,
    length_penalty: float = ...,
    return_attention: bool = ...,
) -> np.ndarray | Attended: ...
def beam_search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = 3,
    max_length: int = 30,
    length_penalty: float = 0.0,
    return_attention: bool = False,
) -> np.ndarray | Attended:
    """Keep the ``beam_size`` most likely partial captions per image at every step.

    Hypotheses are ranked by ``sum(log p) / length ** length_penalty``, where the length counts the generated
    tokens with ``<END>``: 0 ranks by total log-probability (favours short captions), 1 by mean log-probability.
    A hypothesis that emits ``<END>`` is finished: it keeps its score and stays in the beam, competing with the
    open ones. The search stops when every beam of every image is finished or at ``max_length``.

    Args:
        model: a captioning model (see the module docstring).
        features: (N, ...) image features.
        beam_size: hypotheses kept per image; 1 is greedy search.
        max_length: the most tokens generated per caption, ``<END>`` included.
        length_penalty: the exponent alpha above, >= 0.
        return_attention: also return the attention weights behind every word of the best hypotheses (models
            with ``attention_weights`` only).

    Returns:
        (N, max_length) int32 token ids of each image's best hypothesis, ``<NULL>`` after ``<END>``. With
        ``return_attention``, also (N, max_length, L) weights, zero where the row holds ``<NULL>``.
    """
    found = beam_candidates(model, features, beam_size, max_length, length_penalty, return_attention)
    rows = np.arange(found.tokens.shape[0])
    if found.weights is None:
        return found.tokens[rows, found.best]
    return found.tokens[rows, found.best], found.weights


class BeamCandidates(NamedTuple):
    """Every hypothesis a beam search ends with (:func:`beam_candidates`), for N images and B beams.

    Attributes (host arrays):
        tokens: (N, B, max_length) int32 ids of each hypothesis, ``<NULL>`` after ``<END>``.
        logprobs: (N, B) float64 total log-probabilities (``<END>`` included; -inf for a beam that never held a
            hypothesis, when B exceeds the hypotheses there are).
        best: (N,) each image's best beam, by the length-normalised score :func:`beam_search` ranks by.
        weights: (N, max_length, L) attention weights behind every word of each image's best hypothesis, zero
            where it holds ``<NULL>``; None unless asked for.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    best: np.ndarray
    weights: np.ndarray | None


def beam_candidates(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = 3,
    max_length: int = 30,
    length_penalty: float = 0.0,
    return_attention: bool = False,
) -> BeamCandidates:
    """The search of :func:`beam_search` (same arguments), keeping all B hypotheses and their log-probabilities:
    ``tokens[n, best[n]]`` is ``beam_search``'s caption of image n. A server shows the others beside it."""
    check_positive_int("max_length", max_length)
    _check_attention(model, return_attention)
    check_positive_int("beam_size", beam_size)
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    B = int(beam_size)
    state = model.init_state(features)
    xp = array_module(state[0])
    N = state[0].shape[0]
    state = model.select_state(state, xp.repeat(xp.arange(N), B))  # (N*B, ...): beam b of image n at row n*B + b
    beams = _Beams.start(N, B, max_length, model, length_penalty, xp)
    attention = None  # (N, B, max_length, L) with return_attention, once L is known
    words = xp.full(N * B, model.start_id, dtype=np.int32)
    forbidden = _forbidden_ids(model, xp)
    for t in range(max_length):
        log_probs, state = model.step(state, words)
        log_probs = _forbid(log_probs.astype(np.float64), words, forbidden, model.end_id)
        parent, words_nb, was_finished = beams.advance(log_probs.reshape(N, B, -1), t)  # (N, B) each
        state = model.select_state(state, (parent + xp.arange(N)[:, None] * B).ravel())  # the parents' rows
        words = words_nb.ravel().astype(np.int32)
        if return_attention:
            # A new hypothesis's word t came from its parent's step t: the weights of the reordered state.
            weights = model.attention_weights(state).reshape(N, B, -1)
            if attention is None:
                attention = xp.zeros((N, B, max_length, weights.shape[2]), dtype=weights.dtype)
            attention = _follow_parents(attention, parent, t, xp.where(was_finished[:, :, None], 0, weights))
        if beams.finished.all():  # (a GPU syncs here, once a step)
            break
    best = beams.best()
    kept = None if attention is None else to_numpy(attention[xp.arange(N), best])
    return BeamCandidates(to_numpy(beams.tokens), to_numpy(beams.scores), to_numpy(best), kept)


@dataclass
class _Beams:
    """The bookkeeping of beam search: the B hypotheses of each of N images, best first after every step."""

    tokens: np.ndarray  # (N, B, max_length) int32 ids so far, <NULL> after <END>
    scores: np.ndarray  # (N, B) total log-probabilities, float64 so that long sums stay exact
    finished: np.ndarray  # (N, B) whether the hypothesis has emitted <END>
    lengths: np.ndarray  # (N, B) tokens generated, <END> included
    null_id: int
    end_id: int
    length_penalty: float

    @classmethod
    def start(cls, N: int, B: int, max_length: int, model: Decodable, length_penalty: float, xp: ModuleType) -> _Beams:
        """B empty hypotheses per image before the first step, arrays of ``xp`` (the model's device)."""
        scores = xp.zeros((N, B))
        # All beams start identical: only the first may expand at step 0. Beams left at -inf (more beams than
        # hypotheses) are carried along harmlessly and never win.
        scores[:, 1:] = -np.inf
        tokens = xp.full((N, B, max_length), model.null_id, dtype=np.int32)
        finished, lengths = xp.zeros((N, B), dtype=bool), xp.zeros((N, B))
        return cls(tokens, scores, finished, lengths, model.null_id, model.end_id, length_penalty)

    def advance(self, log_probs: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Extend every hypothesis by every word of the (N, B, V) float64 ``log_probs`` of step ``t`` (overwritten)
        and keep each image's B best.

        Returns:
            (N, B) each: the beam each new hypothesis extends (its parent), the word it added, and whether the
            parent was finished already (then the word is ``<NULL>``).
        """
        N, B, V = log_probs.shape
        xp = array_module(log_probs)
        # A finished hypothesis has exactly one continuation, <NULL> at no cost, so it survives unchanged.
        n, b = xp.nonzero(self.finished)  # integer indices: CuPy's boolean-mask assignments are narrower
        log_probs[n, b] = -np.inf
        log_probs[n, b, self.null_id] = 0.0
        candidate = self.scores[:, :, None] + log_probs  # (N, B, V)
        ranked = candidate.reshape(N, B * V)
        if self.length_penalty:
            candidate_length = xp.where(self.finished, self.lengths, t + 1)[:, :, None]
            ranked = (candidate / candidate_length**self.length_penalty).reshape(N, B * V)

        best = _top_k(ranked, B)  # (N, B), best first
        parent, words = xp.divmod(best, V)  # (N, B) each
        was_finished = xp.take_along_axis(self.finished, parent, axis=1)
        self.scores = xp.take_along_axis(candidate.reshape(N, B * V), best, axis=1)
        self.lengths = xp.where(was_finished, xp.take_along_axis(self.lengths, parent, axis=1), t + 1)
        self.finished = was_finished | (words == self.end_id)
        self.tokens = _follow_parents(self.tokens, parent, t, xp.where(was_finished, self.null_id, words))
        return parent, words, was_finished

    def best(self) -> np.ndarray:
        """(N,) each image's best beam, by the length-normalised score."""
        final = self.scores / array_module(self.scores).maximum(self.lengths, 1) ** self.length_penalty
        return final.argmax(axis=1)


def _follow_parents(history: np.ndarray, parent: np.ndarray, t: int, new: np.ndarray) -> np.ndarray:
    """(N, B, max_length, ...) per-step history of each beam -> that of the new hypotheses: their parents' rows,
    with ``new`` (N, B, ...) at step ``t``."""
    xp = array_module(history)
    history = xp.take_along_axis(history, parent.reshape(parent.shape + (1,) * (history.ndim - 2)), axis=1)
    history[:, :, t] = new
    return history


@overload
def search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = ...,
    return_attention: Literal[False] = ...,
) -> np.ndarray: ...
@overload
def search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = ...,
    *,
    return_attention: Literal[True],
) -> Attended: ...
@overload
def search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = ...,
    return_attention: bool = ...,
) -> np.ndarray | Attended: ...
def search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = 0.0,
    return_attention: bool = False,
) -> np.ndarray | Attended:
    """:func:`greedy_search` when ``beam_size`` is 1 (what a beam of one finds, without the beam's bookkeeping),
    else :func:`beam_search`; returns what they return."""
    if beam_size == 1:
        return greedy_search(model, features, max_length, return_attention=return_attention)
    return beam_search(model, features, beam_size, max_length, length_penalty, return_attention=return_attention)


def search_batches(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = 0.0,
    *,
    batch_size: int = 256,
    attention_rows: int = 0,
    progress: bool | None = None,
    desc: str = "captioning",
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """:func:`search` over (M, ...) features ``batch_size`` photos at a time, with a progress bar.

    Yields, per batch of B photos, the (B, max_length) ids and, for the batches that hold any of the first
    ``attention_rows`` photos, their (B, max_length, L) attention weights (else None): only the photos whose
    weights are wanted pay for them. ``progress`` None shows the bar only on a terminal.
    """
    check_positive_int("batch_size", batch_size)
    disable = None if progress is None else not progress
    starts = range(0, len(features), batch_size)

    def read(start: int) -> np.ndarray:  # (B, ...): a slice of an array (either device), or rows read from a stream
        rows = np.arange(start, min(start + batch_size, len(features)))
        return features[start : start + batch_size] if is_array(features) else take_rows(features, rows)

    # The next batch is read (from disk, for a streamed split) by a thread while this one is searched.
    with (
        tqdm(total=len(features), desc=desc, unit="photo", disable=disable) as bar,
        closing(cast(Generator[np.ndarray, None, None], read_ahead(read, starts, 1))) as batches,
    ):
        for start, batch in zip(starts, batches, strict=True):
            weights: np.ndarray | None = None
            if start < attention_rows:
                ids, weights = search(model, batch, beam_size, max_length, length_penalty, return_attention=True)
            else:
                ids = search(model, batch, beam_size, max_length, length_penalty)
            bar.update(len(batch))
            yield ids, weights


def caption_features(
    model: Decodable,
    features: np.ndarray,
    max_length: int,
    beam_size: int = 3,
    length_penalty: float = 0.0,
    *,
    batch_size: int = 256,
    progress: bool | None = None,
    desc: str = "captioning",
) -> list[str]:
    """Captions of (M, ...) image features as strings, decoded ``batch_size`` photos at a time (see
    :func:`search_batches`); returns M strings."""
    batches = search_batches(
        model, features, beam_size, max_length, length_penalty, batch_size=batch_size, progress=progress, desc=desc
    )
    return [caption for ids, _ in batches for caption in decode_captions(ids, model.idx_to_word)]


def caption_words(ids: np.ndarray, idx_to_word: list[str], end_id: int) -> list[tuple[str, ...]]:
    """(N, max_length) ids as the searches return them -> N tuples of words.

    The searches emit words, then ``<END>`` (unless ``max_length`` came first), then ``<NULL>`` padding: a
    caption's T words are its first T tokens and came from the first T steps, whose attention weights are the
    first T rows of what the searches return.
    """
    words = []
    for row in ids.tolist():
        length = row.index(end_id) if end_id in row else len(row)
        words.append(tuple(idx_to_word[i] for i in row[:length]))
    return words


def _check_attention(model: Decodable, return_attention: bool) -> None:
    if return_attention and not model.attends:
        raise ValueError(f"{type(model).__name__} has no attention weights to return (it does not attend)")


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest entries of each row, largest first, ties to the lower index: (N, M) -> (N, k).

    k rounds of ``argmax`` over a scratch copy: for a beam's small k this is several times faster than
    ``argpartition`` + ``argsort`` on rows of B * V entries, and deterministic on ties.
    """
    xp = array_module(x)
    scratch = x.copy()
    rows = xp.arange(x.shape[0])
    best = xp.empty((x.shape[0], k), dtype=np.intp)
    for j in range(k):
        best[:, j] = scratch.argmax(axis=1)
        scratch[rows, best[:, j]] = -np.inf
    return best


def never_drawn(model: Decodable) -> list[int]:
    """The ids no search or sampler ever emits: ``<NULL>``, ``<START>`` and (if the vocabulary has it) ``<UNK>``."""
    return [model.null_id, model.start_id] + ([] if model.unk_id is None else [model.unk_id])


def _forbidden_ids(model: Decodable, xp: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """The :func:`never_drawn` ids and the model's ``no_end_after`` ids, arrays of ``xp``: once per search."""
    return xp.asarray(never_drawn(model)), xp.asarray(model.no_end_after, dtype=np.int64)


def _forbid(
    log_probs: np.ndarray, previous: np.ndarray, forbidden: tuple[np.ndarray, np.ndarray], end_id: int
) -> np.ndarray:
    """Set to -inf, in place, the (N, V) log-probabilities of the never-drawn ids of ``forbidden``
    (:func:`_forbidden_ids`), and of ``<END>`` in the rows whose ``previous`` (N,) word is one of its
    ``no_end_after`` ids; returns ``log_probs``."""
    never, no_end_after = forbidden
    log_probs[:, never] = -np.inf
    if no_end_after.size:
        xp = array_module(log_probs)
        log_probs[xp.flatnonzero(xp.isin(previous, no_end_after)), end_id] = -np.inf
    return log_probs
