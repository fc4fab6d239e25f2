"""CIDEr-D on token ids, fast enough to be the reward of every sampled caption (self-critical sequence training).

:func:`rnncap.metrics.cider.cider_d` scores words and counts document frequencies over the evaluated set itself.
A reward is asked for thousands of times on small batches, so, as self-critical.pytorch does with its
``coco-train-idxs`` document frequencies, :class:`CiderD` counts them ONCE over a set of references (the training
split's) and keeps every reference's tf-idf vector; a batch then costs only its candidates' n-grams and a join.

The formula is pycocoevalcap's CIDEr-D as :mod:`rnncap.metrics.cider` writes it (clipped dot products, Gaussian
length penalty on bigram counts with sigma 6, orders 1-4 averaged, references averaged, times 10), with
``idf = log(images) - log(max(1, df))`` over the images of the index. Built on the references of the evaluated
images it gives exactly ``cider_d``'s per-image numbers (a test checks to 1e-6).

N-grams are numbered by a positional code in base V + 1 (word id + 1 per digit), so an n-gram of any order is one
int64 and n-grams of different orders never share a code; this needs ``(V + 1) ** n < 2 ** 63``
(V < 55,108 for n = 4).

``count_end``: self-critical.pytorch scores each caption with its end token as a word (``array_to_str`` keeps the
0), so that a caption that stops mid-phrase ("a dog in the") misses the references' final bigrams ("grass
<END>"); True does the same. False scores the words alone, as the evaluation does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnncap.metrics.ngrams import lookup


@dataclass(frozen=True)
class _Ngrams:
    """Distinct n-grams of M captions, one entry per (caption, n-gram), sorted by caption then code."""

    row: np.ndarray  # (E,) int64 caption
    code: np.ndarray  # (E,) int64 n-gram code
    order: np.ndarray  # (E,) int64 n-gram length - 1
    count: np.ndarray  # (E,) int64 occurrences in the caption


def caption_tokens(ids: np.ndarray, end_id: int, count_end: bool, skip_first: bool = False) -> np.ndarray:
    """(M, T) token ids -> (M,) int64 number of tokens that count: those before the first ``end_id`` (all T
    without one), plus the ``end_id`` itself with ``count_end``. ``skip_first``: ids[:, 0] is ``<START>`` and is
    left out (the caller passes ``ids[:, 1:]`` then; here only the count is computed)."""
    words = ids[:, 1:] if skip_first else ids
    is_end = words == end_id
    has_end = is_end.any(axis=1)
    lengths = np.where(has_end, is_end.argmax(axis=1), words.shape[1]).astype(np.int64)
    return lengths + (has_end & count_end)


def _ngrams(words: np.ndarray, lengths: np.ndarray, n: int, base: int) -> _Ngrams:
    """The 1- to n-grams of the (M, T) ``words`` (only the first ``lengths[m]`` of row m count), counted."""
    M, T = words.shape
    digits = words.astype(np.int64) + 1
    code = digits
    rows, codes, orders = [], [], []
    for k in range(1, min(n, T) + 1):
        if k > 1:
            code = code[:, :-1] * base + digits[:, k - 1 :]  # (M, T - k + 1): the k-gram starting at each position
        valid = np.arange(T - k + 1)[None, :] + k <= lengths[:, None]
        rows.append(np.broadcast_to(np.arange(M)[:, None], valid.shape)[valid])
        codes.append(code[valid])
        orders.append(np.full(int(valid.sum()), k - 1))
    row, code_all, order = (np.concatenate(part).astype(np.int64) for part in (rows, codes, orders))
    sort = np.lexsort((code_all, row))
    row, code_all, order = row[sort], code_all[sort], order[sort]
    first = np.ones(row.size, dtype=bool)
    first[1:] = (row[1:] != row[:-1]) | (code_all[1:] != code_all[:-1])
    starts = np.flatnonzero(first)
    count = np.diff(np.append(starts, row.size))
    return _Ngrams(row[starts], code_all[starts], order[starts], count.astype(np.int64))


class CiderD:
    """CIDEr-D of candidate token ids against the references of an image set; see the module docstring.

    Build it once from the references (e.g. :meth:`from_captions` on the training split), then call
    :meth:`scores` per batch.
    """

    def __init__(
        self,
        references: Sequence[np.ndarray],
        vocab_size: int,
        end_id: int,
        *,
        count_end: bool = True,
        n: int = 4,
        sigma: float = 6.0,
    ) -> None:
        """Index the references.

        Args:
            references: per image, an (R_i, T_i) int array of its reference captions' token ids, words first
                (no ``<START>``), ended by ``end_id`` or by the row's end; R_i >= 1.
            vocab_size: V, the ids are in [0, V).
            end_id: the id that ends a caption.
            count_end: whether ``end_id`` counts as a word (see the module docstring).
            n: the longest n-gram order; sigma: the width of the length penalty.

        Raises:
            ValueError: no images, an image without references, or a vocabulary too large for the n-gram codes.
        """
        if len(references) == 0:
            raise ValueError("CiderD needs the references of at least one image, got none")
        if (vocab_size + 1) ** n >= 2**63:
            raise ValueError(
                f"vocab_size {vocab_size} is too large for {n}-gram codes in int64 (needs (V+1)**n < 2**63)"
            )
        self.n, self.sigma, self.end_id, self.count_end, self.base = n, float(sigma), end_id, count_end, vocab_size + 1
        num_refs = np.array([len(r) for r in references], dtype=np.int64)
        if num_refs.min() == 0:
            raise ValueError(f"image {int(num_refs.argmin())} has no reference caption: CiderD needs one per image")
        T = max(r.shape[1] for r in references)
        padded = np.full((int(num_refs.sum()), T), end_id, dtype=np.int64)
        at = 0
        for r in references:  # one copy per image, only while indexing
            padded[at : at + len(r), : r.shape[1]] = r
            at += len(r)
        self.num_images = len(references)
        self.image_ref_start = np.concatenate([[0], np.cumsum(num_refs)])  # (I + 1,)
        self.ref_lengths = caption_tokens(padded, end_id, count_end)  # (R,)
        grams = _ngrams(padded, self.ref_lengths, n, self.base)
        ref_image = np.repeat(np.arange(self.num_images), num_refs)
        # Document frequency: the number of images whose references hold the n-gram (pairs made unique first).
        pair_code = np.unique(np.stack([ref_image[grams.row], grams.code]), axis=1)[1]
        self.df_codes, self.df_counts = np.unique(pair_code, return_counts=True)
        self.log_images = math.log(float(self.num_images))
        self.ref_code, self.ref_order = grams.code, grams.order  # sorted by reference, then code
        self.ref_weight = grams.count * self._idf(grams.code)
        self.ref_entry_start = np.searchsorted(grams.row, np.arange(len(padded) + 1))  # (R + 1,)
        self.ref_norm = self._norms(grams.row, grams.order, self.ref_weight, len(padded))  # (R, n)

    @classmethod
    def from_captions(
        cls,
        captions: np.ndarray,
        image_idxs: np.ndarray,
        num_images: int,
        vocab_size: int,
        end_id: int,
        **kwargs: bool | int | float,
    ) -> CiderD:
        """Index a split's captions as references: (K, T) ``<START> w ... <END> <NULL>...`` rows, (K,) their images
        in [0, ``num_images``); every image needs one. ``kwargs``: those of the constructor."""
        order = np.argsort(image_idxs, kind="stable")
        counts = np.bincount(image_idxs, minlength=num_images)
        if counts.min() == 0:
            raise ValueError(f"image {int(counts.argmin())} has no caption to serve as its reference")
        groups = np.split(captions[order, 1:], np.cumsum(counts)[:-1])
        return cls(groups, vocab_size, end_id, **kwargs)  # type: ignore[arg-type]

    def _idf(self, codes: np.ndarray) -> np.ndarray:
        df = lookup(codes, self.df_codes, self.df_counts)
        return self.log_images - np.log(np.maximum(1.0, df))

    def _norms(self, row: np.ndarray, order: np.ndarray, weight: np.ndarray, rows: int) -> np.ndarray:
        squares = np.bincount(row * self.n + order, weights=weight**2, minlength=rows * self.n)
        return np.sqrt(squares).reshape(rows, self.n)

    def scores(self, ids: np.ndarray, images: np.ndarray) -> np.ndarray:
        """(M,) float64 CIDEr-D of (M, T) candidate token ids (words first, then ``end_id``, then anything)
        against the references of ``images`` (M,) (indices into the references the index was built on)."""
        images = np.asarray(images, dtype=np.int64)
        if ids.ndim != 2 or images.shape != (ids.shape[0],):
            raise ValueError(f"ids must be (M, T) with one image per row, got ids {ids.shape}, images {images.shape}")
        if images.size and (images.min() < 0 or images.max() >= self.num_images):
            raise ValueError(f"images must be in [0, {self.num_images}), got {images.min()}..{images.max()}")
        M, n = ids.shape[0], self.n
        lengths = caption_tokens(ids, self.end_id, self.count_end)
        cand = _ngrams(ids, lengths, n, self.base)
        cand_weight = cand.count * self._idf(cand.code)
        cand_norm = self._norms(cand.row, cand.order, cand_weight, M)

        # Every (candidate, reference of its image) pair, then every n-gram entry of each pair's reference.
        first, num = self.image_ref_start[images], np.diff(self.image_ref_start)[images]
        pair_cand = np.repeat(np.arange(M), num)
        pair_ref = np.repeat(first - np.cumsum(num) + num, num) + np.arange(num.sum())
        e_first, e_num = self.ref_entry_start[pair_ref], np.diff(self.ref_entry_start)[pair_ref]
        entry_pair = np.repeat(np.arange(pair_ref.size), e_num)
        entry = np.repeat(e_first - np.cumsum(e_num) + e_num, e_num) + np.arange(e_num.sum())

        # The candidate's weight of each reference n-gram: codes made compact so that (candidate, code) is one key.
        distinct = np.unique(cand.code)
        ref_code = self.ref_code[entry]
        pos = np.minimum(np.searchsorted(distinct, ref_code), max(distinct.size - 1, 0))
        known = distinct[pos] == ref_code if distinct.size else np.zeros(ref_code.size, dtype=bool)
        cand_keys = cand.row * max(distinct.size, 1) + np.searchsorted(distinct, cand.code)
        keys = pair_cand[entry_pair] * max(distinct.size, 1) + pos
        w_cand = np.where(known, lookup(keys, cand_keys, cand_weight), 0.0)  # cand_keys sorted: row, then code
        w_ref = self.ref_weight[entry]
        dot = np.bincount(
            entry_pair * n + self.ref_order[entry],
            weights=np.minimum(w_cand, w_ref) * w_ref,
            minlength=pair_ref.size * n,
        ).reshape(-1, n)
        norms = cand_norm[pair_cand] * self.ref_norm[pair_ref]
        cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms != 0)
        delta = (np.maximum(0, lengths[pair_cand] - 1) - np.maximum(0, self.ref_lengths[pair_ref] - 1)).astype(float)
        similarity = cosine.mean(axis=1) * np.exp(-(delta**2) / (2 * self.sigma**2))  # (P,)
        return np.bincount(pair_cand, weights=similarity, minlength=M) / num * 10.0
