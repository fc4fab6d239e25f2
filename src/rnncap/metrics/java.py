"""The two parts of the COCO caption evaluation that only exist in Java: METEOR and the PTB tokenizer.

Both run through pycocoevalcap (its ``meteor-1.5.jar`` and Stanford CoreNLP 3.4.1's ``PTBTokenizer``), so they
need Java on the ``PATH`` and the ``pycocoevalcap`` package. Where either is missing, :func:`meteor` reports the
metric as skipped with the reason instead of crashing or scoring 0, and :func:`ptb_tokenize` raises, since a
tokenizer that was asked for by name cannot silently be replaced.

METEOR (Banerjee and Lavie 2005; version 1.5: Denkowski and Lavie 2014) aligns words by exact match, stem,
synonym and paraphrase. pycocoevalcap talks to the jar line by line over a pipe, which a newline inside a caption
desynchronises for good (the next read hangs); ``|||`` is its field separator. :func:`meteor` therefore joins every
caption's tokens with single spaces after collapsing any whitespace inside them and dropping ``|``. An empty
caption is passed on as it is: METEOR 1.5 scores it 0 with zero length (checked against the jar), which keeps the
corpus statistics exact where a placeholder word would add a word to the candidate length.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import NamedTuple

from rnncap.metrics.ngrams import Tokens, make_corpus


class MeteorResult(NamedTuple):
    """A METEOR score, or None and the reason it was skipped."""

    score: float | None
    skipped: str | None


def java_missing() -> str | None:
    """Why the Java metrics cannot run here (``"no Java"``, ``"pycocoevalcap not installed"``), None if they can."""
    if shutil.which("java") is None:
        return "no Java"
    try:
        import pycocoevalcap  # noqa: F401  (optional: only the Java metrics need it)
    except ImportError:
        return "pycocoevalcap not installed"
    return None


def _clean(tokens: Tokens) -> str:
    """Tokens as one line METEOR's pipe protocol cannot misread: single spaces, no ``|``, no line breaks."""
    return " ".join(" ".join(tokens).replace("|", " ").split())


def meteor(candidates: Sequence[Tokens], references: Sequence[Sequence[Tokens]]) -> MeteorResult:
    """Corpus METEOR of tokenised candidates against their references through pycocoevalcap's ``Meteor``.

    The corpus score is METEOR's own aggregate over all images' statistics (as pycocoevalcap reports it), not a
    mean of per-image scores. The jar takes a few seconds to start and load its paraphrase table.

    Args:
        candidates: N token lists, one generated caption per image.
        references: N lists of token lists, at least one reference per image.

    Returns:
        (score in [0, 1], None), or (None, reason) where Java or pycocoevalcap is missing or the jar failed.
    """
    make_corpus(candidates, references)  # the same input checks as the other metrics
    reason = java_missing()
    if reason is not None:
        return MeteorResult(None, reason)
    from pycocoevalcap.meteor.meteor import Meteor

    gts = {i: [_clean(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [_clean(c)] for i, c in enumerate(candidates)}
    try:
        scorer = Meteor()
    except OSError as e:  # java found but not runnable
        return MeteorResult(None, f"METEOR could not start Java: {e}")
    try:
        score, _ = scorer.compute_score(gts, res)
    except (ValueError, OSError) as e:  # the jar died or answered with an error line instead of a number
        # compute_score keeps its lock when it raises, and Meteor.__del__ waits for that lock: release it, or
        # stopping the Java process would hang this one.
        if scorer.lock.locked():
            scorer.lock.release()
        return MeteorResult(None, f"METEOR failed: {e}")
    finally:
        del scorer  # its __del__ stops the Java process
    return MeteorResult(float(score), None)


def ptb_tokenize(captions: Sequence[str]) -> list[list[str]]:
    """Tokenise captions with pycocoevalcap's ``PTBTokenizer`` (Stanford CoreNLP, lowercased, punctuation removed).

    Args:
        captions: raw captions.

    Returns:
        One token list per caption; empty for a caption without words.

    Raises:
        RuntimeError: Java or pycocoevalcap is missing, or the tokenizer's output does not line up with its input.
    """
    reason = java_missing()
    if reason is not None:
        raise RuntimeError(f"tokenizer='ptb' needs Java and pycocoevalcap ({reason}); use tokenizer='rnncap'")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # One caption per line: any line break inside a caption would shift every later one, and an empty line
    # at the end of the file is lost, so blank captions skip the tokenizer.
    lines = [" ".join(c.split()) for c in captions]
    given = {i: [{"caption": line}] for i, line in enumerate(lines) if line}
    try:
        out = PTBTokenizer().tokenize(given) if given else {}
    except OSError as e:  # it writes its input next to its jar, inside the installed package
        raise RuntimeError(f"PTBTokenizer could not run: {e}") from e
    if out.keys() != given.keys():
        raise RuntimeError(
            f"PTBTokenizer returned {len(out)} captions for {len(given)}: Java failed (see its message above) or "
            "its output is misaligned"
        )
    return [out[i][0].split() if i in out else [] for i in range(len(lines))]
