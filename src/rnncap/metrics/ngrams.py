"""The token-level corpus the n-gram metrics share: captions as word ids, and every caption's n-gram counts.

BLEU and CIDEr-D both start from "how often does n-gram g occur in caption c". Counting that with one
``Counter`` per caption costs a Python loop over every n-gram; here every caption of the corpus is laid end to
end as one array of word ids, the n-grams of each order are cut from it at once, and ``np.unique`` numbers them.
The result is a sparse table of (caption, n-gram, order, count) entries that the metrics join with sorting and
``np.searchsorted`` instead of dictionary look-ups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Tokens = Sequence[str]


@dataclass(frozen=True)
class Corpus:
    """N candidate captions and their references, tokenised and aligned by image.

    Captions are numbered candidates first (0..N-1), then references (N..N+R-1) grouped by image in image order.

    Attributes:
        num_images: N, one candidate per image.
        ref_image: (R,) int64 image of each reference, non-decreasing.
        ref_start: (N + 1,) int64 the references of image i are references ``ref_start[i]:ref_start[i + 1]``.
        lengths: (N + R,) int64 words per caption.
        words: (T,) int64 the word ids of all captions end to end (T = lengths.sum()).
        starts: (N + R,) int64 where each caption begins in ``words``.
    """

    num_images: int
    ref_image: np.ndarray
    ref_start: np.ndarray
    lengths: np.ndarray
    words: np.ndarray
    starts: np.ndarray

    @property
    def num_refs(self) -> np.ndarray:
        """(N,) int64 references per image."""
        return np.diff(self.ref_start)

    def padded(self, captions: np.ndarray, fill: int) -> np.ndarray:
        """(len(captions), L) int64 word ids of the given captions, padded with ``fill`` (L = longest, >= 1)."""
        lengths = self.lengths[captions]
        L = max(1, int(lengths.max(initial=0)))
        out = np.full((captions.size, L), fill, dtype=np.int64)
        inside = np.arange(L) < lengths[:, None]
        first = np.repeat(self.starts[captions], lengths)  # (S,) where each word's caption starts in `words`
        position = np.arange(first.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # (S,) within it
        out[inside] = self.words[first + position]  # row-major order of `inside` is the same word order
        return out


def make_corpus(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]]) -> Corpus:
    """Number the words of ``candidates`` (N token lists) and ``references`` (N lists of token lists).

    Raises:
        ValueError: the two differ in length, there are none, or an image has no reference.
        TypeError: a caption is a string rather than a token list.
    """
    N = len(candidates)
    if len(references) != N:
        raise ValueError(f"got {N} candidates but {len(references)} reference lists: one list per candidate needed")
    if N == 0:
        raise ValueError("no captions to evaluate")
    num_refs = np.fromiter((len(refs) for refs in references), dtype=np.int64, count=N)
    if num_refs.min() == 0:
        empty = np.flatnonzero(num_refs == 0)
        raise ValueError(f"{empty.size} image(s) have no reference caption (positions {empty[:5].tolist()})")
    captions = [*candidates, *(ref for refs in references for ref in refs)]
    for c in captions:
        if isinstance(c, str):  # a plain string would be read as a list of characters
            raise TypeError(f"captions must be token lists (e.g. caption.split()), got the string {c[:40]!r}")
    vocab: dict[str, int] = {}
    words = np.fromiter((vocab.setdefault(w, len(vocab)) for c in captions for w in c), dtype=np.int64)
    lengths = np.fromiter((len(c) for c in captions), dtype=np.int64, count=len(captions))
    starts = np.cumsum(lengths) - lengths
    ref_start = np.concatenate([[0], np.cumsum(num_refs)])
    return Corpus(N, np.repeat(np.arange(N), num_refs), ref_start, lengths, words, starts)


@dataclass(frozen=True)
class NgramCounts:
    """Sparse n-gram counts of every caption of a :class:`Corpus`, one entry per (caption, distinct n-gram).

    Attributes:
        caption: (E,) int64 caption index (candidates first, then references).
        ngram: (E,) int64 n-gram id, unique across orders; ``num_ngrams`` ids in all.
        order: (E,) int64 n-gram length minus one (0 for unigrams).
        count: (E,) int64 occurrences of the n-gram in the caption (>= 1).
    """

    caption: np.ndarray
    ngram: np.ndarray
    order: np.ndarray
    count: np.ndarray
    num_ngrams: int


def count_ngrams(corpus: Corpus, n: int) -> NgramCounts:
    """The 1- to ``n``-grams of every caption of ``corpus``, counted per caption."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    T = corpus.words.size
    caption_of_word = np.repeat(np.arange(corpus.lengths.size), corpus.lengths)  # (T,)
    end_of_word = (corpus.starts + corpus.lengths)[caption_of_word]  # (T,) where the word's caption ends
    parts = []
    offset = 0
    local, num_local = corpus.words, int(corpus.words.max(initial=-1)) + 1  # (T,) unigram ids: the word ids
    for k in range(1, n + 1):
        if k > T:
            break
        if k > 1:
            # The k-gram at p is the (k-1)-gram at p followed by word p + k - 1: number the distinct pairs, a
            # 1-D unique instead of a slower row-wise one over (T, k) windows. Positions whose k words cross a
            # caption boundary get ids too (keeping arrays aligned); they are never counted.
            _, local = np.unique(local[:-1] * num_local + corpus.words[k - 1 :], return_inverse=True)
            num_local = int(local.max()) + 1
        valid = np.arange(T - k + 1) + k <= end_of_word[: T - k + 1]  # (T - k + 1,) inside one caption
        if not valid.any():
            break
        caption = caption_of_word[: T - k + 1][valid]
        # One entry per (caption, n-gram): unique over a combined key, whose multiplicity is the count.
        keys, count = np.unique(caption * num_local + local[valid], return_counts=True)
        parts.append((keys // num_local, keys % num_local + offset, np.full(keys.size, k - 1), count))
        offset += num_local
    if not parts:  # every caption is empty
        empty = np.zeros(0, dtype=np.int64)
        return NgramCounts(empty, empty, empty, empty, 0)
    caption, ngram, order, count = (np.concatenate(column).astype(np.int64) for column in zip(*parts, strict=True))
    return NgramCounts(caption, ngram, order, count, offset)


def lookup(keys: np.ndarray, table_keys: np.ndarray, table_values: np.ndarray) -> np.ndarray:
    """``table_values`` at ``keys`` where ``table_keys`` (sorted, distinct) holds them, else 0.

    The vectorised stand-in for ``defaultdict.get(key, 0)`` that the reference implementations use.
    """
    out = np.zeros(keys.shape, dtype=table_values.dtype)
    if table_keys.size == 0:
        return out
    pos = np.minimum(np.searchsorted(table_keys, keys), table_keys.size - 1)
    found = table_keys[pos] == keys
    out[found] = table_values[pos[found]]
    return out


def group_max(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` (sorted) and the largest of ``values`` under each."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    distinct, first = np.unique(keys, return_index=True)
    return distinct, (np.maximum.reduceat(values, first) if first.size else values[:0])
