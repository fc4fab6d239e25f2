"""Tokenizer, vocabulary and encoding (rnncap.text), and records -> arrays (prepare_records, summary_line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnncap.data import Dataset, ImageRecord, build_vocab, encode, has_words, prepare_records, summary_line, tokenize
from rnncap.text import END_ID, NULL_ID, START_ID, UNK_ID


@pytest.mark.parametrize(
    ("caption", "tokens"),
    [
        ("A dog, running.", ["a", "dog", "running"]),
        ("  Two DOGS play;  in the snow !! ", ["two", "dogs", "play", "in", "the", "snow"]),
        ("The man doesn't know.", ["the", "man", "does", "n't", "know"]),  # PTB: "does n't"
        ("I can't", ["i", "ca", "n't"]),
        ("A girl holding a horse 's lead", ["a", "girl", "holding", "a", "horse", "'s", "lead"]),  # Flickr8k style
        ("the dog's bone", ["the", "dog", "'s", "bone"]),
        ("they're here and we've left", ["they", "'re", "here", "and", "we", "'ve", "left"]),
        ("the dog\u2019s bone", ["the", "dog", "'s", "bone"]),  # curly apostrophe
        ("A black-and-white dog", ["a", "black-and-white", "dog"]),  # hyphenated words stay whole
        ("1.5 miles, 10,000 people", ["1.5", "miles", "10,000", "people"]),
        ('He said "hi" (loudly) -- then: left...', ["he", "said", "hi", "loudly", "then", "left"]),
        ("the 'sand' castle", ["the", "sand", "castle"]),  # quotes dropped, not mistaken for a clitic
        ("Café au lait", ["café", "au", "lait"]),
        ("snake_case & co", ["snake", "case", "co"]),
        ("...", []),
        ("", []),
    ],
)
def test_tokenize(caption: str, tokens: list[str]) -> None:
    assert tokenize(caption) == tokens


@pytest.mark.parametrize("caption", ["...", "", "  ", " -- ; ! ", "a", "A dog.", "'s", "1", "é"])
def test_has_words_agrees_with_tokenize(caption: str) -> None:
    assert has_words(caption) == bool(tokenize(caption))


def test_build_vocab_orders_by_count_then_alphabet_and_is_deterministic() -> None:
    captions = [["b", "a", "c"], ["a", "b", "zebra"], ["c", "a", "d"], ["d", "b"]]
    vocab = build_vocab(captions, min_count=2)
    assert vocab == {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, "a": 4, "b": 5, "c": 6, "d": 7}
    assert build_vocab(captions[::-1], min_count=2) == vocab  # the order of the captions does not matter
    assert list(build_vocab(captions, min_count=1))[-1] == "zebra"
    with pytest.raises(ValueError, match="min_count"):
        build_vocab(captions, min_count=0)


def test_encode_layout_truncation_and_unknown_words() -> None:
    vocab = build_vocab([["a", "dog", "runs"]], min_count=1)  # a=4 dog=5 runs=6
    out = encode([["a", "dog"], ["a", "cat", "runs", "dog", "a"], ["runs"]], vocab, max_length=3)
    assert out.dtype == np.int32 and out.shape == (3, 5)
    np.testing.assert_array_equal(
        out,
        [
            [START_ID, 4, 5, END_ID, NULL_ID],
            [START_ID, 4, UNK_ID, 6, END_ID],  # truncated to 3 words, <END> kept; "cat" unknown
            [START_ID, 6, END_ID, NULL_ID, NULL_ID],
        ],
    )


def test_encode_matches_a_plain_loop(rng: np.random.Generator) -> None:
    words = [f"w{i}" for i in range(30)]
    captions = [list(rng.choice(words, size=rng.integers(1, 25))) for _ in range(200)]
    vocab = build_vocab(captions, min_count=3)
    out = encode(captions, vocab, max_length=16)
    for row, tokens in zip(out, captions, strict=True):  # the obvious reference
        ids = [vocab.get(w, UNK_ID) for w in tokens[:16]]
        expected = [START_ID, *ids, END_ID] + [NULL_ID] * (16 - len(ids))
        assert row.tolist() == expected


def test_encode_bad_input() -> None:
    vocab = build_vocab([["a"]], min_count=1)
    with pytest.raises(ValueError, match=r"1 caption\(s\) have no tokens \(indices \[1\]\)"):
        encode([["a"], []], vocab, max_length=4)
    with pytest.raises(ValueError, match="max_length"):
        encode([["a"]], vocab, max_length=0)
    with pytest.raises(ValueError, match="<UNK> to id 3"):
        encode([["a"]], {"<NULL>": 0, "<START>": 1, "<END>": 2, "a": 3}, max_length=4)
    assert encode([], vocab, max_length=4).shape == (0, 6)


def _records() -> list[ImageRecord]:
    return [
        ImageRecord("1", Path("/d/1.jpg"), "train", ("A dog runs.", "A dog sits.")),
        ImageRecord("2", Path("/d/2.jpg"), "val", ("A zebra runs.",)),
        ImageRecord("3", Path("/d/3.jpg"), "train", ("Two dogs run.", "A dog runs fast.", "A cat.")),
    ]


def test_prepare_records_builds_the_vocabulary_from_train_only() -> None:
    word_to_idx, tokens, caption_image, raw = prepare_records(_records(), min_count=1, max_length=4)
    assert "zebra" not in word_to_idx  # seen only in val
    assert list(word_to_idx)[4:6] == ["a", "dog"]  # the most frequent train words first
    np.testing.assert_array_equal(caption_image, [0, 0, 1, 2, 2, 2])
    assert caption_image.dtype == np.int32 and tokens.shape == (6, 6)
    assert raw[2] == "A zebra runs."
    assert tokens[2, 2] == UNK_ID
    # A given vocabulary is used as it is.
    vocab = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, "zebra": 4}
    prepared = prepare_records(_records(), word_to_idx=vocab, max_length=4)
    assert prepared.word_to_idx == vocab and prepared.tokens[2, 2] == 4


def test_prepare_records_bad_input() -> None:
    records = [*_records(), ImageRecord("9", Path("/d/9.jpg"), "train", ("ok caption", "?!"))]
    with pytest.raises(ValueError, match=r"1 caption\(s\) have no words: 9 \(/d/9.jpg\): '\?!'"):
        prepare_records(records)
    with pytest.raises(ValueError, match=r"no 'train' split to build the vocabulary from \(splits present: \['val'\]"):
        prepare_records([r for r in _records() if r.split == "val"])
    with pytest.raises(ValueError, match="empty"):
        prepare_records([])


def test_summary_line() -> None:
    dataset = Dataset("toy", Path("/d"), tuple(_records()), skipped=("x.jpg: in no split list",))
    prepared = prepare_records(dataset, min_count=1)
    assert summary_line(dataset) == "toy: 3 images (train 2, val 1), 6 captions, 1 skipped"
    assert summary_line(dataset, prepared) == (
        f"toy: 3 images (train 2, val 1), 6 captions, vocabulary {len(prepared.word_to_idx)} words, 1 skipped"
    )
