"""CIDEr-D on token ids (rnncap.train.rewards): the numbers of rnncap.metrics' CIDEr-D, from an index built once."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_captions, make_vocab
from rnncap.metrics.cider import cider_d
from rnncap.text import END_ID, idx_to_word_list
from rnncap.train.rewards import CiderD, caption_tokens

VOCAB = make_vocab(12)
WORDS = idx_to_word_list(VOCAB)


def words_of(row: np.ndarray, count_end: bool) -> list[str]:
    """The tokens of a row of ids (words first) as the metric reads them: up to <END>, with it if it counts."""
    out = []
    for idx in row.tolist():
        if idx == END_ID:
            return out + (["<END>"] if count_end else [])
        out.append(WORDS[idx])
    return out


def split(rng: np.random.Generator, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Captions of a split (1-5 per image, random lengths, repeated words) and their images."""
    per_image = rng.integers(1, 6, size=images)
    image_idxs = np.repeat(np.arange(images), per_image)
    captions = make_captions(rng, image_idxs.size, 12, 9)  # few distinct words: many shared n-grams
    return captions, rng.permutation(image_idxs)


@pytest.mark.parametrize("count_end", [False, True])
def test_equals_the_metric_on_the_same_captions(rng: np.random.Generator, count_end: bool) -> None:
    captions, image_idxs = split(rng, 30)
    index = CiderD.from_captions(captions, image_idxs, 30, len(VOCAB), END_ID, count_end=count_end)
    candidates = make_captions(rng, 30, 12, 9)[:, 1:]  # words first
    candidates[3] = END_ID  # an empty caption
    candidates[4, :] = 5  # no <END>: the whole row counts
    ours = index.scores(candidates, np.arange(30))
    references = [[words_of(c[1:], count_end) for c in captions[image_idxs == i]] for i in range(30)]
    _, theirs = cider_d([words_of(c, count_end) for c in candidates], references)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    assert ours.max() > 0.5  # the comparison is not between zeros


def test_document_frequencies_come_from_the_index_not_the_batch(rng: np.random.Generator) -> None:
    """A candidate's reward depends on its own image only: scoring it alone or among others is the same."""
    captions, image_idxs = split(rng, 20)
    index = CiderD.from_captions(captions, image_idxs, 20, len(VOCAB), END_ID)
    candidates = make_captions(rng, 8, 12, 9)[:, 1:]
    images = rng.integers(0, 20, size=8)
    together = index.scores(candidates, images)
    alone = np.array([index.scores(candidates[i : i + 1], images[i : i + 1])[0] for i in range(8)])
    np.testing.assert_allclose(together, alone, rtol=1e-12)


def test_a_reference_scores_highest_and_repeats_pay_nothing(rng: np.random.Generator) -> None:
    captions = np.array([[1, 4, 5, 6, 7, 2, 0], [1, 4, 5, 6, 8, 2, 0], [1, 9, 10, 11, 2, 0, 0]])
    index = CiderD.from_captions(captions, np.array([0, 0, 1]), 2, len(VOCAB), END_ID)
    exact, repeated, stutter = index.scores(
        np.array([[4, 5, 6, 7, 2, 0, 0], [4, 4, 4, 4, 4, 2, 0], [4, 5, 6, 5, 6, 5, 6]]), np.zeros(3, dtype=int)
    )
    assert exact > repeated and exact > stutter
    assert repeated < 1.0  # clipping: "a a a a a" earns at most what one "a" earns


def test_caption_tokens_counts_up_to_end() -> None:
    ids = np.array([[4, 5, 2, 0], [4, 5, 6, 7], [2, 0, 0, 0]])
    assert caption_tokens(ids, END_ID, count_end=False).tolist() == [2, 4, 0]
    assert caption_tokens(ids, END_ID, count_end=True).tolist() == [3, 4, 1]


def test_bad_inputs_are_refused(rng: np.random.Generator) -> None:
    captions, image_idxs = split(rng, 5)
    with pytest.raises(ValueError, match="image 5 has no caption"):
        CiderD.from_captions(captions, image_idxs, 6, len(VOCAB), END_ID)
    with pytest.raises(ValueError, match="at least one image"):
        CiderD([], len(VOCAB), END_ID)
    with pytest.raises(ValueError, match="too large"):
        CiderD([captions[:1, 1:]], 60_000, END_ID)
    index = CiderD.from_captions(captions, image_idxs, 5, len(VOCAB), END_ID)
    with pytest.raises(ValueError, match=r"images must be in \[0, 5\)"):
        index.scores(captions[:2, 1:], np.array([0, 5]))
    with pytest.raises(ValueError, match="one image per row"):
        index.scores(captions[:2, 1:], np.array([0]))
