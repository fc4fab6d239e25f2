"""The special tokens every vocabulary starts with, and turning token ids back into words."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

NULL, START, END, UNK = "<NULL>", "<START>", "<END>", "<UNK>"
NULL_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3


def idx_to_word_list(word_to_idx: Mapping[str, int]) -> list[str]:
    """The inverse table of ``word_to_idx``, as a list indexed by id; its length is the vocabulary size V.

    As in CS231n, V is the number of words, and ids nobody names read as ``<UNK>``. CS231n's own tests use a
    vocabulary with a gap (``{'<NULL>': 0, 'cat': 2, 'dog': 3}``, so V = 3): a word whose id is V or more cannot
    be represented, and gets a warning rather than an error so that those tests still run.
    """
    if word_to_idx.get(NULL) != NULL_ID:
        raise ValueError(f"the vocabulary must map {NULL} to id {NULL_ID}, got {word_to_idx.get(NULL)!r}")
    words = [UNK] * len(word_to_idx)
    for word, idx in word_to_idx.items():
        if not isinstance(idx, int | np.integer) or idx < 0:
            raise ValueError(f"vocabulary id of {word!r} must be a non-negative integer, got {idx!r}")
        if idx >= len(words):
            warnings.warn(
                f"word {word!r} has id {idx}, outside the vocabulary size {len(words)}: it can never be produced",
                stacklevel=3,
            )
            continue
        words[idx] = word
    return words


def decode_captions(ids: np.ndarray, idx_to_word: Sequence[str]) -> list[str]:
    """Turn (N, T) token ids into N strings: stops at ``<END>``, leaves out ``<NULL>`` and ``<START>``."""
    ids = np.atleast_2d(ids)
    captions = []
    for row in ids.tolist():  # one string per caption; the words are joined in Python anyway
        words = []
        for idx in row:
            word = idx_to_word[idx]
            if word == END:
                break
            if word not in (NULL, START):
                words.append(word)
        captions.append(" ".join(words))
    return captions
