"""BLEU-1..4 exactly as the COCO caption evaluation computes it (pycocoevalcap ``bleu/bleu_scorer.py``).

BLEU (Papineni, Roukos, Ward and Zhu 2002, "BLEU: a method for automatic evaluation of machine translation")
multiplies clipped n-gram precisions and a brevity penalty. The COCO variant reproduced here:

- clipping: each candidate n-gram counts at most as often as in the reference that holds it most often;
- corpus level: clipped matches and candidate n-grams are summed over all images before dividing, and the
  brevity penalty compares the summed candidate length with the summed *closest* reference lengths (per image
  the reference length nearest the candidate's, the shorter one on a tie: ``option='closest'``);
- BLEU-n is the geometric mean of the precisions of orders 1..n, each computed as
  ``(matches + 1e-15) / (guesses + 1e-9)``: these epsilons keep an empty or very short candidate from dividing by
  zero, so a missing order scores about 1e-6 rather than exactly 0;
- the brevity penalty ``exp(1 - r / c)`` likewise uses ``c / r = (c + 1e-15) / (r + 1e-9)``;
- per-image scores use the same formulas on one image's counts (pycocoevalcap returns them too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rnncap.metrics.ngrams import Tokens, count_ngrams, group_max, lookup, make_corpus

_TINY = 1e-15  # pycocoevalcap's epsilons, kept because they decide the score of degenerate candidates
_SMALL = 1e-9


def bleu(
    candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], n: int = 4
) -> tuple[list[float], np.ndarray]:
    """Corpus BLEU-1..n of tokenised candidates against their references, as pycocoevalcap's ``Bleu(n)``.

    Args:
        candidates: N token lists, one generated caption per image.
        references: N lists of token lists, at least one reference per image.
        n: the longest n-gram order.

    Returns:
        scores: [BLEU-1, ..., BLEU-n] of the whole corpus, each in [0, 1].
        per_image: (N, n) each image's own BLEU-1..n.
    """
    corpus = make_corpus(candidates, references)
    N = corpus.num_images
    counts = count_ngrams(corpus, n)
    G = max(1, counts.num_ngrams)

    # Clipping bound: the most times any one reference of the image holds the n-gram, keyed by image * G + n-gram.
    is_ref = counts.caption >= N
    ref_keys = corpus.ref_image[counts.caption[is_ref] - N] * G + counts.ngram[is_ref]
    max_keys, max_ref = group_max(ref_keys, counts.count[is_ref])

    is_cand = ~is_ref
    cand, cand_order = counts.caption[is_cand], counts.order[is_cand]
    clipped = np.minimum(counts.count[is_cand], lookup(cand * G + counts.ngram[is_cand], max_keys, max_ref))
    correct = np.bincount(cand * n + cand_order, weights=clipped, minlength=N * n).reshape(N, n)  # (N, n)
    testlen = corpus.lengths[:N]
    guess = np.maximum(0, testlen[:, None] - np.arange(n)).astype(np.float64)  # (N, n) n-grams in each candidate

    # Closest reference length, the shorter on a tie: minimise |r - c| * (longest + 1) + r per image.
    ref_len = corpus.lengths[N:]
    base = int(max(ref_len.max(), testlen.max())) + 1
    closeness = np.abs(ref_len - testlen[corpus.ref_image]) * base + ref_len
    reflen = np.minimum.reduceat(closeness, corpus.ref_start[:-1]) % base  # (N,)

    precisions = (correct + _TINY) / (guess + _SMALL)  # (N, n)
    per_image = np.cumprod(precisions, axis=1) ** (1.0 / np.arange(1, n + 1))  # geometric means of orders 1..k
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    short = ratio < 1
    per_image[short] *= np.exp(1 - 1 / ratio[short])[:, None]

    # Corpus level in plain floats, in pycocoevalcap's order of operations.
    total_correct, total_guess = correct.sum(axis=0), guess.sum(axis=0)
    scores, product = [], 1.0
    for k in range(n):
        product *= (float(total_correct[k]) + _TINY) / (float(total_guess[k]) + _SMALL)
        scores.append(product ** (1.0 / (k + 1)))
    ratio_all = (int(testlen.sum()) + _TINY) / (int(reflen.sum()) + _SMALL)
    if ratio_all < 1:
        scores = [s * math.exp(1 - 1 / ratio_all) for s in scores]
    return scores, per_image
