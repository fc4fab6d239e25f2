"""Caption metrics (rnncap.metrics): BLEU, ROUGE-L and CIDEr-D against pycocoevalcap on identical tokens, METEOR
and the PTB tokenizer through Java, the evaluate / format_scores / caption_stats API and its errors.

The comparisons use real Flickr8k dev captions (../shared/data/flickr8k, skipped when absent): of each photo's five
human captions one plays the generated caption and the other four the references, with a few deliberately odd
candidates mixed in.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from rnncap.data import read_flickr8k, tokenize
from rnncap.metrics import (
    Scores,
    bleu,
    caption_stats,
    cider_d,
    evaluate,
    format_scores,
    java_missing,
    meteor,
    ptb_tokenize,
    rouge_l,
)
from rnncap.metrics import java as java_module

FLICKR8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k"
TOL = 1e-6
needs_java = pytest.mark.skipif(java_missing() is not None, reason=f"Java metrics unavailable: {java_missing()}")


@pytest.fixture(scope="module")
def dev_captions() -> list[list[str]]:
    """The five raw human captions of each of the 1,000 Flickr8k dev photos."""
    if not (FLICKR8K / "Flickr8k.token.txt").is_file():
        pytest.skip(f"Flickr8k not found at {FLICKR8K} (needs Flickr8k.token.txt, the split lists and Images/)")
    return [list(r.captions) for r in read_flickr8k(FLICKR8K, splits=("dev",)).records]


@pytest.fixture(scope="module")
def dev_tokens(dev_captions: list[list[str]]) -> list[list[list[str]]]:
    return [[tokenize(c) for c in caps] for caps in dev_captions]


def _odd(candidates: list[list[str]], references: list[list[list[str]]]) -> list[list[str]]:
    """``candidates`` with the first few replaced by degenerate captions a model can produce."""
    odd = [
        [],  # empty
        ["dog"],  # one word
        ["a"] * 12,  # one word repeated
        ["a", "dog", "a", "dog", "a", "dog", "a", "dog"],  # a bigram repeated
        references[4][0] + references[4][1] + references[4][0],  # longer than every reference
        list(references[5][0]),  # identical to a reference
        ["zebra-striped", "quux", "xylophone"],  # words of no reference
    ]
    return odd + candidates[len(odd) :]


def _pycocoevalcap_scores(
    candidates: list[list[str]], references: list[list[list[str]]]
) -> dict[str, tuple[object, np.ndarray]]:
    """pycocoevalcap's BLEU, ROUGE-L and CIDEr-D of token lists, given as the space-joined strings it expects."""
    pytest.importorskip("pycocoevalcap", reason="pycocoevalcap not installed: nothing to compare with")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = {i: [" ".join(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(c)] for i, c in enumerate(candidates)}
    b, b_img = Bleu(4).compute_score(gts, res, verbose=0)
    r, r_img = Rouge().compute_score(gts, res)
    c, c_img = Cider().compute_score(gts, res)
    return {"bleu": (b, np.array(b_img).T), "rouge": (r, np.asarray(r_img)), "cider": (c, np.asarray(c_img))}


def _assert_same_as_pycocoevalcap(candidates: list[list[str]], references: list[list[list[str]]]) -> dict[str, float]:
    """Our three metrics equal pycocoevalcap's to TOL, corpus and per image; returns the largest differences."""
    theirs = _pycocoevalcap_scores(candidates, references)
    ours = {"bleu": bleu(candidates, references), "rouge": rouge_l(candidates, references)}
    ours["cider"] = cider_d(candidates, references)
    worst = {}
    for name, (score, per_image) in ours.items():
        their_score, their_per_image = theirs[name]
        np.testing.assert_allclose(score, their_score, rtol=0, atol=TOL, err_msg=f"{name} corpus score")
        np.testing.assert_allclose(per_image, their_per_image, rtol=0, atol=TOL, err_msg=f"{name} per image")
        worst[name] = float(np.max(np.abs(np.subtract(score, their_score))))
        worst[name + " per image"] = float(np.max(np.abs(per_image - their_per_image)))
    return worst


def _scores_of_tokens(candidates: list[list[str]], references: list[list[list[str]]]) -> dict[str, float]:
    """BLEU-4, ROUGE-L and CIDEr-D of token lists."""
    return {
        "BLEU-4": bleu(candidates, references)[0][3],
        "ROUGE_L": rouge_l(candidates, references)[0],
        "CIDEr": cider_d(candidates, references)[0],
    }


# ---- BLEU, ROUGE-L, CIDEr-D against pycocoevalcap -----------------------------------------------------------


@pytest.mark.parametrize("held_out", [0, 4])
def test_bleu_rouge_cider_equal_pycocoevalcap_on_flickr8k_dev(dev_tokens: list[list[list[str]]], held_out: int) -> None:
    candidates = [caps[held_out] for caps in dev_tokens]
    references = [caps[:held_out] + caps[held_out + 1 :] for caps in dev_tokens]
    worst = _assert_same_as_pycocoevalcap(_odd(candidates, references), references)
    print(f"\nlargest |ours - pycocoevalcap| over 1,000 dev photos (held-out caption {held_out}): {worst}")


def test_odd_corpora_equal_pycocoevalcap(dev_tokens: list[list[list[str]]]) -> None:
    refs = [caps[1:] for caps in dev_tokens[:40]]
    empty_ref = [caps[1:] for caps in dev_tokens[:3]]
    empty_ref[0] = [[], *empty_ref[0][1:]]  # a reference without words ("..." tokenises to nothing)
    empty_ref[1] = [[]]
    cases = {
        "all candidates empty": ([[] for _ in refs], refs),
        "one photo (CIDEr's idf is 0)": ([dev_tokens[0][0]], [refs[0]]),
        "one reference each": ([c[0] for c in dev_tokens[:40]], [[c[1]] for c in dev_tokens[:40]]),
        "empty references": ([[], dev_tokens[1][0], []], empty_ref),
        "candidates = a reference": ([r[0] for r in refs], refs),
    }
    for name, (candidates, references) in cases.items():
        try:
            _assert_same_as_pycocoevalcap(candidates, references)
        except AssertionError as e:
            raise AssertionError(f"case {name!r}: {e}") from None


def test_metrics_by_hand() -> None:
    """A worked example, independent of pycocoevalcap, including BLEU's epsilon for a missing order."""
    candidates = [["a", "dog", "runs"]]
    references = [[["a", "dog", "is", "running"], ["the", "dog", "runs"]]]
    # LCS 2 with both references: best precision 2/3, best recall 2/3 -> F = 2/3 for any beta.
    assert rouge_l(candidates, references)[0] == pytest.approx(2 / 3, abs=1e-12)
    # 3/3 unigrams and 2/2 bigrams match, the only trigram does not: (1e-15 / 1) ** (1/3) = 1e-5.
    (b1, b2, b3, b4), per_image = bleu(candidates, references)
    assert (b1, b2) == (pytest.approx(1, abs=1e-9), pytest.approx(1, abs=1e-9))
    assert b3 == pytest.approx(1e-5, rel=1e-6) and b4 < b3
    np.testing.assert_allclose(per_image, [[b1, b2, b3, b4]])
    # Closest reference length, not the shortest: a 4-word candidate against lengths 3 and 5 -> r = 3 (tie, shorter).
    short = bleu([["the", "dog", "runs", "fast"]], [[["the", "dog", "runs"], ["the", "dog", "runs", "very", "fast"]]])
    assert short[0][0] == pytest.approx(1.0, abs=1e-9)  # c = 4 > r = 3: no brevity penalty
    brief = bleu([["the", "dog"]], [[["the", "dog", "runs"]]])[0][0]
    assert brief == pytest.approx(math.exp(1 - 3 / 2), rel=1e-6)  # brevity penalty exp(1 - r / c)
    # CIDEr-D takes its idf from the evaluated set: with one photo every idf is log(1) - log(1) = 0.
    assert cider_d([["a", "dog"]], [[["a", "dog"]]])[0] == 0.0
    # Two photos, each caption equal to its reference: cosine 1 for unigrams and bigrams, no 3- or 4-grams.
    two = cider_d([["a", "dog"], ["a", "cat"]], [[["a", "dog"]], [["a", "cat"]]])
    np.testing.assert_allclose(two[1], 10 * (1 + 1 + 0 + 0) / 4)
    # Empty candidates score 0 everywhere without dividing by zero.
    assert rouge_l([[]], references)[0] == 0.0 and bleu([[]], references)[0][0] == 0.0
    assert cider_d([[], ["a"]], [references[0], [["a"]]])[1][0] == 0.0


def test_repeating_words_does_not_pay() -> None:
    references = [[["a", "dog", "runs", "on", "the", "grass"]], [["two", "cats", "sleep"]]]
    plain = cider_d([["a", "dog", "runs"], ["two", "cats"]], references)[1][0]
    repeated = cider_d([["dog", "dog", "dog", "dog", "dog", "dog"], ["two", "cats"]], references)[1][0]
    assert repeated < plain  # CIDEr-D's clipping and length penalty
    assert bleu([["dog"] * 6], [references[0]])[0][0] == pytest.approx(1 / 6, rel=1e-6)  # clipped to one match


# ---- METEOR and the PTB tokenizer (Java) ------------------------------------------------------------------------


@pytest.mark.slow
@needs_java
def test_meteor_through_java_survives_odd_captions(dev_captions: list[list[str]]) -> None:
    """One Java start (a few seconds): empty, newline and '|||' captions neither crash nor desynchronise METEOR."""
    candidates = {i: caps[0] for i, caps in enumerate(dev_captions[:30])}
    references = {i: caps[1:] for i, caps in enumerate(dev_captions[:30])}
    candidates[0] = ""
    candidates[1] = "..."  # no words
    references[2] = [*references[2][:-1], "a dog ||| runs\nand jumps"]
    started = time.perf_counter()
    scores = evaluate(candidates, references, metrics=("METEOR",))
    print(f"\nMETEOR of 30 held-out dev captions: {scores['METEOR']:.4f} ({time.perf_counter() - started:.1f} s)")
    assert scores.skipped == {} and 0.1 < scores["METEOR"] < 0.5  # human captions score about 0.25
    # The token-level function sanitises what tokenize() cannot produce: line breaks and the field separator.
    assert java_module._clean(["a", "dog\nruns", "|||", ""]) == "a dog runs"


@needs_java
def test_our_tokenizer_against_ptbtokenizer_on_flickr8k_dev(
    dev_captions: list[list[str]], dev_tokens: list[list[list[str]]]
) -> None:
    """Measured, not demanded exactly: how often tokenize() equals PTBTokenizer, and what that does to scores."""
    flat = [c for caps in dev_captions for c in caps]
    ptb = ptb_tokenize([*flat, "", "  \n ", "A dog\nruns."])
    assert ptb[len(flat) :] == [[], [], ["a", "dog", "runs"]]  # blank and multi-line captions keep alignment
    ours = [t for caps in dev_tokens for t in caps]
    identical = sum(a == b for a, b in zip(ours, ptb[: len(flat)], strict=True)) / len(flat)
    ptb_caps = [ptb[5 * i : 5 * i + 5] for i in range(len(dev_captions))]
    ours_scores = _scores_of_tokens([caps[0] for caps in dev_tokens], [caps[1:] for caps in dev_tokens])
    ptb_scores = _scores_of_tokens([caps[0] for caps in ptb_caps], [caps[1:] for caps in ptb_caps])
    gaps = {name: abs(ours_scores[name] - ptb_scores[name]) for name in ours_scores}
    print(f"\ntokenize() == PTBTokenizer on {identical:.2%} of {len(flat):,} dev captions; score gaps {gaps}")
    assert identical > 0.98
    assert max(gaps.values()) < 0.01


@needs_java
def test_evaluate_with_the_ptb_tokenizer() -> None:
    candidates = {"a": "A dog (brown) runs.", "b": ""}
    references = {"a": ["A brown dog runs.", "The dog is running!"], "b": ["Two cats sleep."]}
    scores = evaluate(candidates, references, metrics=("BLEU", "ROUGE_L"), tokenizer="ptb")
    ours = evaluate(candidates, references, metrics=("BLEU", "ROUGE_L"))
    assert scores.keys() == ours.keys() and all(0 <= v <= 1 for v in scores.values())


def test_without_java_meteor_is_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(java_module.shutil, "which", lambda name: None)
    assert meteor([["a", "dog"]], [[["a", "dog"]]]) == (None, "no Java")
    scores = evaluate({1: "a dog runs"}, {1: ["a dog is running", "a dog runs"]})
    assert list(scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE_L", "CIDEr"]
    assert scores.skipped == {"METEOR": "no Java"}
    assert "| METEOR         | skipped (no Java) |" in format_scores(scores)
    with pytest.raises(RuntimeError, match="tokenizer='ptb' needs Java"):
        evaluate({1: "a dog"}, {1: ["a dog"]}, tokenizer="ptb")


# ---- the evaluate API ----------------------------------------------------------------------------------------


def test_evaluate_equals_the_token_level_metrics_and_is_fast(
    dev_captions: list[list[str]], dev_tokens: list[list[list[str]]]
) -> None:
    """1,000 photos x (1 + 4) captions, raw strings in: the sub-second target of the issue, checked loosely."""
    candidates = {f"img{i}": caps[0] for i, caps in enumerate(dev_captions)}
    references = {f"img{i}": caps[1:] for i, caps in enumerate(dev_captions)}
    started = time.perf_counter()
    scores = evaluate(candidates, references, metrics=("BLEU", "ROUGE_L", "CIDEr"))
    seconds = time.perf_counter() - started
    print(f"\nevaluate(BLEU, ROUGE_L, CIDEr) on 1,000 dev photos: {seconds:.3f} s\n{format_scores(scores)}")
    expected = _scores_of_tokens([caps[0] for caps in dev_tokens], [caps[1:] for caps in dev_tokens])
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-12)
    assert all(isinstance(v, float) for v in scores.values())
    assert 0.15 < scores["BLEU-4"] < 0.3 and 0.6 < scores["CIDEr"] < 1.0  # human vs human on Flickr8k
    assert seconds < 10  # typically 0.15 s; generous for a busy machine


def test_evaluate_is_case_and_punctuation_blind_and_keeps_metric_order() -> None:
    references = {"x": ["A dog runs on the grass.", "A brown dog is running."], "y": ["Two cats sleep.", "cats"]}
    a = evaluate({"x": "a dog runs", "y": "two cats"}, references, metrics=("CIDEr", "ROUGE_L"))
    b = evaluate({"y": "Two cats!", "x": "A DOG, runs."}, references, metrics=("CIDEr", "ROUGE_L"))
    assert list(a) == ["CIDEr", "ROUGE_L"] and a == pytest.approx(b)
    assert isinstance(a, Scores) and a.skipped == {}
    assert evaluate({"x": "a dog runs", "y": "two cats"}, references, metrics="CIDEr") == {"CIDEr": a["CIDEr"]}


@pytest.mark.parametrize(
    ("candidates", "references", "error", "match"),
    [
        ({1: "a", 2: "b", 3: "c"}, {1: ["a"], 4: ["d"]}, ValueError, r"\(e\.g\. \[2, 3\]\); 1 reference id.*\[4\]"),
        ({1: "a"}, {1: []}, ValueError, r"1 image\(s\) have no reference captions \(e\.g\. \[1\]\)"),
        ({}, {}, ValueError, "no candidate captions"),
        ({1: ["a", "dog"]}, {1: ["a dog"]}, TypeError, "candidate 1 must be one caption string"),
        ({1: "a dog"}, {1: "a dog"}, TypeError, "must be a list of captions, got one string"),
        ({1: "a dog"}, {1: ["a dog", None]}, TypeError, "references of 1 must be strings"),
    ],
)
def test_evaluate_errors(candidates: dict, references: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        evaluate(candidates, references, metrics=("BLEU",))


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['SPICE'\]"):
        evaluate({1: "a"}, {1: ["a"]}, metrics=("BLEU", "SPICE"))
    with pytest.raises(ValueError, match="unknown tokenizer 'nltk'"):
        evaluate({1: "a"}, {1: ["a"]}, tokenizer="nltk")
    with pytest.raises(ValueError, match="2 candidates but 1 reference lists"):
        bleu([["a"], ["b"]], [[["a"]]])
    with pytest.raises(ValueError, match=r"no reference caption \(positions \[1\]\)"):
        cider_d([["a"], ["b"]], [[["a"]], []])
    with pytest.raises(TypeError, match="must be token lists"):
        rouge_l(["a dog"], [[["a", "dog"]]])


# ---- presentation --------------------------------------------------------------------------------------------


def test_format_scores_is_a_markdown_table_on_the_0_to_100_scale() -> None:
    table = format_scores(Scores({"BLEU-4": 0.21161, "CIDEr": 0.8036}, skipped={"METEOR": "no Java"}), digits=2)
    assert table.splitlines() == [
        "| Metric (0-100) |             Score |",
        "|:---------------|------------------:|",
        "| BLEU-4         |             21.16 |",
        "| CIDEr          |             80.36 |",
        "| METEOR         | skipped (no Java) |",
    ]


def test_caption_stats() -> None:
    generated = {1: "A dog runs.", 2: "a dog runs", 3: "A cat sleeps on a mat", 4: "two dogs"}
    stats = caption_stats(generated, training_captions=["A dog runs!", "Two dogs play."])
    assert stats == {
        "captions": 4,
        "distinct": 3 / 4,  # the first two are the same caption once tokenised
        "vocabulary": 9,  # a, dog, runs, cat, sleeps, on, mat, two, dogs
        "mean_length": (3 + 3 + 6 + 2) / 4,
        "stutter": 0.0,
        "cut_off": 0.0,
        "in_training": 2 / 4,
    }
    assert "in_training" not in caption_stats(["a dog"])


def test_caption_stats_find_stutters_and_cut_off_endings() -> None:
    """The habits of a model fine-tuned for CIDEr: a run of words repeated back to back, a caption stopped on "the";
    words used again further on ("a man and a man walk") are no stutter, a caption ending on a noun is not cut off."""
    stutter = ["a dog in the in the", "the the dog", "a man a man runs", "a b c a b c d"]
    clean = ["a man and a man walk", "a dog in the park", "a b c d a b c", "dog"]
    assert caption_stats(stutter)["stutter"] == 1.0
    assert caption_stats(clean)["stutter"] == 0.0
    cut = caption_stats(["a dog runs in the", "a man sitting on", "a dog runs.", "a cat and"])
    assert cut["cut_off"] == 3 / 4 and cut["stutter"] == 0.0
    assert caption_stats(["a b c d a b c d"])["stutter"] == 0.0  # a repeated run of 4 words: beyond STUTTER_RUN
    with pytest.raises(ValueError, match="no captions"):
        caption_stats([])
