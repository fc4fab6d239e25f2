"""Caption metrics as the COCO caption evaluation (pycocoevalcap) computes them.

BLEU-1..4, ROUGE-L and CIDEr-D are pure NumPy and equal pycocoevalcap's numbers on the same tokens; METEOR runs
pycocoevalcap's Java jar when Java is there and is reported as skipped otherwise::

    from rnncap.metrics import evaluate, format_scores, caption_stats
    scores = evaluate({"img1": "a dog runs"}, {"img1": ["A dog is running.", "A brown dog runs on grass."]})
    print(format_scores(scores))        # markdown, 0-100 scale
    print(caption_stats({"img1": "a dog runs"}))

The token-level functions (``bleu``, ``rouge_l``, ``cider_d``, ``meteor``) take N candidate token lists and N lists
of reference token lists and return the corpus score with per-image scores, like pycocoevalcap's scorers.

References: Papineni et al. 2002 (BLEU); Lin 2004 (ROUGE); Vedantam, Zitnick and Parikh 2015 (CIDEr);
Denkowski and Lavie 2014 (METEOR 1.5); Chen et al. 2015, "Microsoft COCO Captions: data collection and evaluation
server" (the evaluation code, pycocoevalcap).
"""

from rnncap.metrics.bleu import bleu
from rnncap.metrics.cider import cider_d
from rnncap.metrics.evaluate import METRICS, TOKENIZERS, Scores, caption_stats, evaluate, format_scores
from rnncap.metrics.java import MeteorResult, java_missing, meteor, ptb_tokenize
from rnncap.metrics.rouge import rouge_l

__all__ = [
    "METRICS",
    "TOKENIZERS",
    "MeteorResult",
    "Scores",
    "bleu",
    "caption_stats",
    "cider_d",
    "evaluate",
    "format_scores",
    "java_missing",
    "meteor",
    "ptb_tokenize",
    "rouge_l",
]
