"""Captions in, COCO caption scores out: the pipeline of pycocoevalcap's ``COCOEvalCap`` on plain dictionaries.

``evaluate`` tokenises generated and reference captions alike (our :func:`rnncap.text.tokenize` by default,
no Java needed; or pycocoevalcap's Java ``PTBTokenizer``), then scores them with BLEU-1..4, METEOR, ROUGE-L and
CIDEr-D as pycocoevalcap does, on its 0-1 scale. ``format_scores`` makes the markdown table (0-100 scale) that
papers print, and ``caption_stats`` describes the captions' habits beside the scores (how varied, how long, how
much copied from the training set, how often they stutter or stop mid-phrase: the habits a model fine-tuned for
CIDEr picks up, "a dog in the in the").
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from rnncap.metrics.bleu import bleu
from rnncap.metrics.cider import cider_d
from rnncap.metrics.java import meteor, ptb_tokenize
from rnncap.metrics.rouge import rouge_l
from rnncap.text import tokenize

METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
TOKENIZERS = ("rnncap", "ptb")
_SHOW = 5  # ids named in an error message
# Words no English caption ends on: a caption ending on one was cut off mid-phrase ("a dog runs in the").
CUT_OFF_ENDINGS = frozenset(
    {"a", "an", "the", "and", "or", "but", "of", "in", "on", "at", "with", "to", "for", "from", "by", "into", "onto"}
    | {"over", "under", "near", "through", "its", "his", "her", "their", "is", "are"}
)
STUTTER_RUN = 3  # the longest run of words whose immediate repetition counts as a stutter ("in the in the")

ImageId = TypeVar("ImageId", bound=Hashable)  # any hashable key; candidates and references share theirs


class Scores(dict[str, float]):
    """Metric name -> score on the 0-1 scale (``BLEU-1``..``BLEU-4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``).

    A metric that could not run (METEOR without Java) has no entry; ``skipped`` maps its name to the reason.
    """

    def __init__(self, scores: Mapping[str, float] | None = None, skipped: Mapping[str, str] | None = None) -> None:
        super().__init__(scores or {})
        self.skipped: dict[str, str] = dict(skipped or {})

    def __repr__(self) -> str:
        return f"Scores({dict(self)!r}, skipped={self.skipped!r})"


def evaluate(
    candidates: Mapping[ImageId, str],
    references: Mapping[ImageId, Sequence[str]],
    metrics: Sequence[str] = METRICS,
    tokenizer: str = "rnncap",
) -> Scores:
    """Score generated captions against human references as the COCO caption evaluation does.

    Args:
        candidates: {image id: generated caption}, one per image.
        references: {image id: [human captions]}, the same ids, at least one caption each.
        metrics: any of ``BLEU`` (gives BLEU-1..4), ``METEOR``, ``ROUGE_L``, ``CIDEr`` (CIDEr-D), or one name.
        tokenizer: ``"rnncap"`` (pure Python, agrees with the PTB tokenizer on nearly all captions) or ``"ptb"``
            (pycocoevalcap's Java ``PTBTokenizer``, as ``COCOEvalCap`` runs it).

    Returns:
        Scores on the 0-1 scale, in the order of ``metrics``; METEOR is left out with a reason in
        ``Scores.skipped`` where Java is missing. CIDEr-D's idf comes from these references, so its value depends
        on the evaluated set as a whole (as in pycocoevalcap).

    Raises:
        ValueError: unknown metric or tokenizer, ids that differ between the two mappings, an image without
            references.
        TypeError: a caption that is not a string (e.g. a token list) or references given as one string.
        RuntimeError: ``tokenizer="ptb"`` without Java.
    """
    if isinstance(metrics, str):  # evaluate(..., metrics="CIDEr") would otherwise iterate over letters
        metrics = (metrics,)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {unknown or list(metrics)}: choose from {list(METRICS)}")
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {tokenizer!r}: choose from {list(TOKENIZERS)}")
    ids = _check_inputs(candidates, references)

    captions = [candidates[i] for i in ids]
    ref_lists = [list(references[i]) for i in ids]
    flat = captions + [r for refs in ref_lists for r in refs]
    tokens = ptb_tokenize(flat) if tokenizer == "ptb" else [tokenize(c) for c in flat]
    cands, rest = tokens[: len(ids)], iter(tokens[len(ids) :])
    refs = [[next(rest) for _ in r] for r in ref_lists]

    scores = Scores()
    for metric in metrics:
        if metric == "BLEU":
            values, _ = bleu(cands, refs)
            scores.update({f"BLEU-{k}": value for k, value in enumerate(values, start=1)})
        elif metric == "METEOR":
            result = meteor(cands, refs)
            if result.score is None:
                scores.skipped["METEOR"] = str(result.skipped)
            else:
                scores["METEOR"] = result.score
        elif metric == "ROUGE_L":
            scores["ROUGE_L"] = rouge_l(cands, refs)[0]
        else:
            scores["CIDEr"] = cider_d(cands, refs)[0]
    return scores


def format_scores(scores: Scores | Mapping[str, float], digits: int = 1) -> str:
    """A markdown table of ``scores`` on the 0-100 scale (CIDEr too, as papers print it), skipped metrics noted.

    >>> print(format_scores({"BLEU-4": 0.2345, "CIDEr": 0.5}))
    | Metric (0-100) | Score |
    |:---------------|------:|
    | BLEU-4         |  23.4 |
    | CIDEr          |  50.0 |
    """
    rows = [(name, f"{100 * value:.{digits}f}") for name, value in scores.items()]
    rows += [(name, f"skipped ({reason})") for name, reason in getattr(scores, "skipped", {}).items()]
    header = ("Metric (0-100)", "Score")
    w0 = max(len(header[0]), *(len(r[0]) for r in rows)) if rows else len(header[0])
    w1 = max(len(header[1]), *(len(r[1]) for r in rows)) if rows else len(header[1])
    lines = [f"| {header[0]:<{w0}} | {header[1]:>{w1}} |", f"|:{'-' * (w0 + 1)}|{'-' * (w1 + 1)}:|"]
    lines += [f"| {name:<{w0}} | {value:>{w1}} |" for name, value in rows]
    return "\n".join(lines)


def caption_stats(
    candidates: Mapping[ImageId, str] | Sequence[str], training_captions: Iterable[str] | None = None
) -> dict[str, float]:
    """How varied, long and original generated captions are; compared after :func:`tokenize` (case, punctuation).

    Args:
        candidates: generated captions, as {image id: caption} or a list.
        training_captions: the training set's human captions; when given, ``in_training`` is reported.

    Returns:
        ``captions``: how many; ``distinct``: the share of distinct captions (1.0 = all different);
        ``vocabulary``: distinct words used; ``mean_length``: words per caption; ``stutter``: the share of
        captions that repeat a word or a run of up to :data:`STUTTER_RUN` words back to back ("the the", "in the in
        the"); ``cut_off``: the share ending on a word of :data:`CUT_OFF_ENDINGS` ("... in the"); ``in_training``
        (only with ``training_captions``): the share of captions that occur verbatim among them.
    """
    texts = list(candidates.values()) if isinstance(candidates, Mapping) else list(candidates)
    if not texts:
        raise ValueError("no captions to describe")
    bad = [t for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"captions must be strings, got {type(bad[0]).__name__} {bad[0]!r:.60}")
    tokens = [tokenize(t) for t in texts]
    joined = [" ".join(t) for t in tokens]
    stats = {
        "captions": len(texts),
        "distinct": len(set(joined)) / len(texts),
        "vocabulary": len({w for t in tokens for w in t}),
        "mean_length": sum(map(len, tokens)) / len(texts),
        "stutter": sum(map(_stutters, tokens)) / len(texts),
        "cut_off": sum(bool(t) and t[-1] in CUT_OFF_ENDINGS for t in tokens) / len(texts),
    }
    if training_captions is not None:
        seen = {" ".join(tokenize(c)) for c in training_captions}
        stats["in_training"] = sum(j in seen for j in joined) / len(texts)
    return stats


def _stutters(words: Sequence[str]) -> bool:
    """Whether some run of 1..STUTTER_RUN words is followed at once by itself."""
    return any(
        words[i : i + n] == words[i + n : i + 2 * n]
        for n in range(1, STUTTER_RUN + 1)
        for i in range(len(words) - 2 * n + 1)
    )


def _check_inputs(candidates: Mapping[ImageId, str], references: Mapping[ImageId, Sequence[str]]) -> list[ImageId]:
    """The ids to evaluate, in the order of ``candidates``, after checking that both mappings fit together."""
    if not candidates:
        raise ValueError("no candidate captions to evaluate")
    missing = [i for i in candidates if i not in references]
    extra = [i for i in references if i not in candidates]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} candidate id(s) have no references (e.g. {missing[:_SHOW]})")
        if extra:
            parts.append(f"{len(extra)} reference id(s) have no candidate (e.g. {extra[:_SHOW]})")
        raise ValueError("candidates and references must have the same ids: " + "; ".join(parts))
    for i, caption in candidates.items():
        if not isinstance(caption, str):
            raise TypeError(f"candidate {i!r} must be one caption string, got {type(caption).__name__} {caption!r:.60}")
    for i, refs in references.items():
        if isinstance(refs, str):
            raise TypeError(f"references of {i!r} must be a list of captions, got one string {refs!r:.60}")
        bad = [r for r in refs if not isinstance(r, str)]
        if bad:
            raise TypeError(f"references of {i!r} must be strings, got {type(bad[0]).__name__} {bad[0]!r:.60}")
    empty = [i for i, refs in references.items() if len(refs) == 0]
    if empty:
        raise ValueError(f"{len(empty)} image(s) have no reference captions (e.g. {empty[:_SHOW]})")
    return list(candidates)
