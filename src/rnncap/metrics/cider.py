"""CIDEr-D exactly as the COCO caption evaluation computes it (pycocoevalcap ``cider/cider_scorer.py``).

CIDEr (Vedantam, Zitnick and Parikh 2015, "CIDEr: Consensus-based image description evaluation") compares a
caption's tf-idf weighted n-grams with those of each reference by cosine similarity. pycocoevalcap's ``Cider`` is
the CIDEr-D variant, reproduced here with its details:

- idf from the references of the evaluated set itself: ``log(N images) - log(max(1, df))``, df = the number of
  images whose references contain the n-gram; an n-gram of no reference gets the largest weight ``log N``;
- tf is the raw count in the caption (the cosine makes the paper's normalisation by length irrelevant, except
  in the clipping below);
- clipping (the "D"): the dot product sums ``min(w_cand, w_ref) * w_ref`` so that repeating a word pays nothing;
- a Gaussian length penalty ``exp(-delta^2 / (2 sigma^2))``, sigma = 6, where delta is the difference of the
  *bigram* counts ``max(0, length - 1)`` (what pycocoevalcap measures; it equals the difference of lengths unless a
  caption is empty);
- a cosine with a zero-norm vector counts 0; orders 1..4 are averaged, references averaged, the result times 10,
  and the corpus score is the mean over images.

One vectorised pass: the n-gram weights of every caption are one sparse table (see
:mod:`rnncap.metrics.ngrams`), candidate weights are joined to reference entries by sorted keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnncap.metrics.ngrams import Tokens, count_ngrams, lookup, make_corpus


def cider_d(
    candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], n: int = 4, sigma: float = 6.0
) -> tuple[float, np.ndarray]:
    """Corpus CIDEr-D of tokenised candidates against their references, as pycocoevalcap's ``Cider()``.

    Args:
        candidates: N token lists, one generated caption per image.
        references: N lists of token lists, at least one reference per image.
        n: the longest n-gram order.
        sigma: the width of the length penalty.

    Returns:
        score: the mean over images (0 for a perfect mismatch; about 10 at most for one reference).
        per_image: (N,) each image's CIDEr-D.
    """
    corpus = make_corpus(candidates, references)
    N = corpus.num_images
    counts = count_ngrams(corpus, n)
    G = max(1, counts.num_ngrams)
    image = np.concatenate([np.arange(N), corpus.ref_image])[counts.caption]  # (E,) image of each entry
    is_ref = counts.caption >= N

    # Document frequency: over images, an n-gram counted once per image whose references hold it.
    pairs = np.unique(image[is_ref] * G + counts.ngram[is_ref])
    df = np.bincount(pairs % G, minlength=G)
    weight = counts.count * (np.log(float(N)) - np.log(np.maximum(1.0, df[counts.ngram])))  # (E,) tf * idf

    C = corpus.lengths.size
    norm = np.sqrt(np.bincount(counts.caption * n + counts.order, weights=weight**2, minlength=C * n)).reshape(C, n)

    # Clipped dot products: each reference entry meets the candidate weight of the same n-gram of its image.
    cand_keys = counts.caption[~is_ref] * G + counts.ngram[~is_ref]  # a candidate's index is its image's
    order = np.argsort(cand_keys, kind="stable")
    w_ref = weight[is_ref]
    w_cand = lookup(image[is_ref] * G + counts.ngram[is_ref], cand_keys[order], weight[~is_ref][order])
    R = C - N
    dot = np.bincount(
        (counts.caption[is_ref] - N) * n + counts.order[is_ref],
        weights=np.minimum(w_cand, w_ref) * w_ref,
        minlength=R * n,
    ).reshape(R, n)  # (R, n)

    norms = norm[corpus.ref_image] * norm[N:]  # (R, n) candidate norm times reference norm
    cosine = np.divide(dot, norms, out=np.zeros_like(dot), where=norms != 0)
    bigrams = np.maximum(0, corpus.lengths - 1)
    delta = (bigrams[corpus.ref_image] - bigrams[N:]).astype(np.float64)
    similarity = cosine * np.exp(-(delta**2) / (2 * sigma**2))[:, None]  # (R, n)

    per_ref = similarity.mean(axis=1)  # (R,) mean over orders
    per_image = np.add.reduceat(per_ref, corpus.ref_start[:-1]) / corpus.num_refs * 10.0
    return float(per_image.mean()), per_image
