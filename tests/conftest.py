"""Shared fixtures: small vocabularies and captions built in the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest


def make_vocab(num_words: int) -> dict[str, int]:
    """The four special tokens followed by ``num_words`` plain words."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(num_words)]
    return {word: idx for idx, word in enumerate(words)}


def make_captions(rng: np.random.Generator, n: int, t: int, vocab_size: int) -> np.ndarray:
    """(n, t) int32 captions ``<START> words <END> <NULL>...`` of random lengths (at least one word)."""
    captions = np.zeros((n, t), dtype=np.int32)
    captions[:, 0] = 1
    lengths = rng.integers(1, t - 1, size=n)  # words per caption; <END> follows them
    for i, length in enumerate(lengths):  # building fixtures, not a hot path
        captions[i, 1 : 1 + length] = rng.integers(4, vocab_size, size=length)
        captions[i, 1 + length] = 2
    return captions


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
