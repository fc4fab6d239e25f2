"""ROUGE-L exactly as the COCO caption evaluation computes it (pycocoevalcap ``rouge/rouge.py``).

ROUGE-L (Lin 2004, "ROUGE: A package for automatic evaluation of summaries") scores a caption by its longest
common subsequence (LCS) with a reference. The COCO variant reproduced here takes, per image, the *largest*
precision ``LCS / len(candidate)`` and the *largest* recall ``LCS / len(reference)`` over the references (each
maximum may come from a different reference), combines them into ``F = (1 + b^2) P R / (R + b^2 P)`` with
b = 1.2, and averages F over images.

pycocoevalcap splits captions with ``str.split(" ")``, so an empty caption is one empty token: an empty candidate
scores 0, except against an empty reference, which it matches (F = 1). That is reproduced, not corrected.

The LCS of all (candidate, reference) pairs is one dynamic programme vectorised over pairs and reference
positions, looping only over candidate positions. It uses that a row of the LCS table is the running maximum of
``max(previous row, match ? previous row shifted right + 1 : 0)``, which holds because neighbouring LCS values
differ by at most one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnncap.metrics.ngrams import Corpus, Tokens, make_corpus


def rouge_l(
    candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]], beta: float = 1.2
) -> tuple[float, np.ndarray]:
    """Mean ROUGE-L F-score of tokenised candidates against their references, as pycocoevalcap's ``Rouge()``.

    Args:
        candidates: N token lists, one generated caption per image.
        references: N lists of token lists, at least one reference per image.
        beta: the weight of recall relative to precision.

    Returns:
        score: the mean over images, in [0, 1].
        per_image: (N,) each image's ROUGE-L.
    """
    # The empty token that pycocoevalcap's split(" ") makes of an empty caption, kept for identical scores.
    candidates = [c if len(c) else [""] for c in candidates]
    references = [[r if len(r) else [""] for r in refs] for refs in references]
    corpus = make_corpus(candidates, references)
    N = corpus.num_images
    lcs = lcs_lengths(corpus)  # (R,)
    precision = lcs / corpus.lengths[corpus.ref_image]
    recall = lcs / corpus.lengths[N:]
    p_max = np.maximum.reduceat(precision, corpus.ref_start[:-1])  # (N,)
    r_max = np.maximum.reduceat(recall, corpus.ref_start[:-1])
    both = (p_max != 0) & (r_max != 0)
    per_image = np.zeros(N)
    per_image[both] = ((1 + beta**2) * p_max[both] * r_max[both]) / (r_max[both] + beta**2 * p_max[both])
    return float(per_image.mean()), per_image


def lcs_lengths(corpus: Corpus) -> np.ndarray:
    """(R,) int64 the LCS length of every reference with its image's candidate."""
    N = corpus.num_images
    cand = corpus.padded(corpus.ref_image, fill=-1)  # (R, Lc) the candidate of each pair
    ref = corpus.padded(np.arange(N, corpus.lengths.size), fill=-2)  # (R, Lr); pads never match each other
    R, Lr = ref.shape
    row = np.zeros((R, Lr + 1), dtype=np.int64)  # LCS of the candidate prefix so far with each reference prefix
    for i in range(cand.shape[1]):  # a padded candidate position matches nothing and leaves the row unchanged
        match = cand[:, i : i + 1] == ref  # (R, Lr)
        extend = np.where(match, row[:, :-1] + 1, row[:, 1:])
        row[:, 1:] = np.maximum.accumulate(extend, axis=1)
    return row[np.arange(R), corpus.lengths[N:]]
