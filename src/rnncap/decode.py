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

Both searches are vectorised over the batch (and the beams): the only Python loop runs over time steps. Neither
ever emits ``<NULL>`` or ``<START>`` (padding and a prompt, not words), nor, for a model whose ``unk_id`` is not
None, ``<UNK>``: it stands for the rare words of the training captions, and a caption that says "a <UNK> on the
grass" tells its reader nothing (the Flickr8k model wrote one in 14% of its greedy dev captions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from rnncap.text import decode_captions

State = tuple[np.ndarray, ...]


class Decodable(Protocol):
    """What the searches need of a model (see the module docstring)."""

    vocab_size: int
    null_id: int
    start_id: int
    end_id: int
    unk_id: int | None
    attends: bool
    idx_to_word: list[str]

    def init_state(self, features: np.ndarray) -> State: ...

    def step(self, state: State, word_ids: np.ndarray) -> tuple[np.ndarray, State]: ...

    def select_state(self, state: State, rows: np.ndarray) -> State: ...

    def attention_weights(self, state: State) -> np.ndarray: ...


def greedy_search(
    model: Decodable, features: np.ndarray, max_length: int = 30, return_attention: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Pick the most likely word at every step.

    Args:
        model: a captioning model (see the module docstring).
        features: (N, ...) image features, as the model's ``init_state`` takes them.
        max_length: the most tokens generated per caption, ``<END>`` included.
        return_attention: also return the attention weights behind every word (models with
            ``attention_weights`` only).

    Returns:
        (N, max_length) int32 token ids; after a caption's ``<END>`` the row holds ``<NULL>``. With
        ``return_attention``, also (N, max_length, L) weights, zero where the row holds ``<NULL>``.
    """
    _check_max_length(max_length)
    _check_attention(model, return_attention)
    state = model.init_state(features)
    N = state[0].shape[0]
    captions = np.full((N, max_length), model.null_id, dtype=np.int32)
    attention = None
    words = np.full(N, model.start_id, dtype=np.int32)
    finished = np.zeros(N, dtype=bool)
    for t in range(max_length):
        log_probs, state = model.step(state, words)
        words = _forbid_special_tokens(model, log_probs).argmax(axis=1).astype(np.int32)
        captions[:, t] = np.where(finished, model.null_id, words)
        if return_attention:
            weights = model.attention_weights(state)  # (N, L)
            if attention is None:
                attention = np.zeros((N, max_length, weights.shape[1]), dtype=weights.dtype)
            attention[~finished, t] = weights[~finished]
        finished |= words == model.end_id
        if finished.all():
            break
    return (captions, attention) if return_attention else captions


def beam_search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int = 3,
    max_length: int = 30,
    length_penalty: float = 0.0,
    return_attention: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
    _check_max_length(max_length)
    _check_attention(model, return_attention)
    if not isinstance(beam_size, int | np.integer) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size!r}")
    if length_penalty < 0:
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    B, V = int(beam_size), model.vocab_size

    state = model.init_state(features)
    N = state[0].shape[0]
    state = model.select_state(state, np.repeat(np.arange(N), B))  # (N*B, ...): beam b of image n at row n*B + b
    tokens = np.full((N, B, max_length), model.null_id, dtype=np.int32)
    attention = None  # (N, B, max_length, L) with return_attention, once L is known
    scores = np.zeros((N, B))  # total log-probability, float64 so that long sums stay exact
    # All beams start identical: only the first may expand at step 0. Beams left at -inf (more beams than
    # hypotheses) are carried along harmlessly and never win.
    scores[:, 1:] = -np.inf
    finished = np.zeros((N, B), dtype=bool)
    lengths = np.zeros((N, B))
    words = np.full(N * B, model.start_id, dtype=np.int32)

    for t in range(max_length):
        log_probs, state = model.step(state, words)
        log_probs = _forbid_special_tokens(model, log_probs.astype(np.float64)).reshape(N, B, V)
        # A finished hypothesis has exactly one continuation, <NULL> at no cost, so it survives unchanged.
        log_probs[finished] = -np.inf
        log_probs[finished, model.null_id] = 0.0
        candidate = scores[:, :, None] + log_probs  # (N, B, V)
        ranked = candidate.reshape(N, B * V)
        if length_penalty:
            candidate_length = np.where(finished, lengths, t + 1)[:, :, None]
            ranked = (candidate / candidate_length**length_penalty).reshape(N, B * V)

        best = _top_k(ranked, B)  # (N, B), best first
        parent, words_nb = np.divmod(best, V)  # (N, B) each

        scores = np.take_along_axis(candidate.reshape(N, B * V), best, axis=1)
        was_finished = np.take_along_axis(finished, parent, axis=1)
        lengths = np.where(was_finished, np.take_along_axis(lengths, parent, axis=1), t + 1)
        finished = was_finished | (words_nb == model.end_id)
        tokens = np.take_along_axis(tokens, parent[:, :, None], axis=1)
        tokens[:, :, t] = np.where(was_finished, model.null_id, words_nb)

        rows = (parent + np.arange(N)[:, None] * B).ravel()  # (N*B,) rows of the surviving parents
        state = model.select_state(state, rows)
        words = words_nb.ravel().astype(np.int32)
        if return_attention:
            # A new hypothesis's word t came from its parent's step t: the weights of the reordered state.
            weights = model.attention_weights(state).reshape(N, B, -1)
            if attention is None:
                attention = np.zeros((N, B, max_length, weights.shape[2]), dtype=weights.dtype)
            attention = np.take_along_axis(attention, parent[:, :, None, None], axis=1)
            attention[:, :, t] = np.where(was_finished[:, :, None], 0, weights)
        if finished.all():
            break

    final = scores / np.maximum(lengths, 1) ** length_penalty
    best_beam = final.argmax(axis=1)  # (N,)
    best = tokens[np.arange(N), best_beam]
    return (best, attention[np.arange(N), best_beam]) if return_attention else best


def search(
    model: Decodable,
    features: np.ndarray,
    beam_size: int,
    max_length: int,
    length_penalty: float = 0.0,
    return_attention: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
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
    if not isinstance(batch_size, int | np.integer) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    disable = None if progress is None else not progress
    with tqdm(total=len(features), desc=desc, unit="photo", disable=disable) as bar:
        for start in range(0, len(features), batch_size):
            batch = features[start : start + batch_size]  # (B, ...)
            if start < attention_rows:
                ids, weights = search(model, batch, beam_size, max_length, length_penalty, return_attention=True)
                bar.update(len(batch))
                yield ids, weights
            else:
                ids = search(model, batch, beam_size, max_length, length_penalty)
                bar.update(len(batch))
                yield ids, None


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
    scratch = x.copy()
    rows = np.arange(x.shape[0])
    best = np.empty((x.shape[0], k), dtype=np.intp)
    for j in range(k):
        best[:, j] = scratch.argmax(axis=1)
        scratch[rows, best[:, j]] = -np.inf
    return best


def _forbid_special_tokens(model: Decodable, log_probs: np.ndarray) -> np.ndarray:
    """Set the log-probability of ``<NULL>``, ``<START>`` and ``<UNK>`` to -inf, in place; (N, V) -> (N, V)."""
    log_probs[:, [model.null_id, model.start_id]] = -np.inf
    if model.unk_id is not None:
        log_probs[:, model.unk_id] = -np.inf
    return log_probs


def _check_max_length(max_length: int) -> None:
    if not isinstance(max_length, int | np.integer) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
