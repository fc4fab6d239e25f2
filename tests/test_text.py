"""rnncap.text: the tokenizer, the vocabulary, encoding and decoding, and the checks of vocabularies and caption
arrays."""

from __future__ import annotations

import numpy as np
import pytest

from rnncap.text import (
    END_ID,
    NULL_ID,
    START_ID,
    UNK_ID,
    build_vocab,
    check_caption_ids,
    check_special_ids,
    check_unique_ids,
    decode_captions,
    encode,
    has_words,
    idx_to_word_list,
    tokenize,
)


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


def test_decode_captions_stops_at_end():
    idx_to_word = ["<NULL>", "<START>", "<END>", "<UNK>", "a", "dog"]
    ids = np.array([[1, 4, 5, 2, 4], [4, 0, 5, 0, 0]])
    assert decode_captions(ids, idx_to_word) == ["a dog", "a dog"]


def test_idx_to_word_list_inverts_the_vocabulary() -> None:
    assert idx_to_word_list({"<NULL>": 0, "b": 2, "a": 1}) == ["<NULL>", "a", "b"]
    with pytest.warns(UserWarning, match="word 'dog' has id 3, outside the vocabulary size 3"):
        assert idx_to_word_list({"<NULL>": 0, "cat": 2, "dog": 3}) == ["<NULL>", "<UNK>", "cat"]  # CS231n's gap
    with pytest.raises(ValueError, match="must map <NULL> to id 0, got None"):
        idx_to_word_list({"a": 0})
    with pytest.raises(ValueError, match="id of 'a' must be a non-negative integer, got -1"):
        idx_to_word_list({"<NULL>": 0, "a": -1})


def test_check_special_ids_names_the_source_and_the_token() -> None:
    check_special_ids({"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, "a": 4})
    with pytest.raises(ValueError, match=r"vocab.json must map <END> to id 2, got 5"):
        check_special_ids({"<NULL>": 0, "<START>": 1, "<END>": 5, "<UNK>": 3}, source="vocab.json")
    with pytest.raises(ValueError, match=r"the vocabulary must map <UNK> to id 3, got None"):
        check_special_ids({"<NULL>": 0, "<START>": 1, "<END>": 2})


@pytest.mark.parametrize(
    ("captions", "kwargs", "message"),
    [
        (np.ones((2, 5)), {}, "captions must hold integer token ids, got dtype float64"),
        (np.ones(5, dtype=int), {}, r"captions must have shape \(K, T\) with K >= 1 and T >= 2, got \(5,\)"),
        (np.ones((0, 5), dtype=int), {}, r"with K >= 1 and T >= 2, got \(0, 5\)"),
        (np.ones((2, 1), dtype=int), {}, r"T >= 2, got \(2, 1\)"),
        (np.ones((2, 3), dtype=int), {"min_length": 4}, r"T >= 4"),
        (np.ones((3, 5), dtype=int), {"rows": 2}, r"captions must have shape \(2, T\) with T >= 2, got \(3, 5\)"),
        (np.full((2, 5), 10), {"vocab_size": 10}, r"captions: token id 10 is outside the vocabulary \[0, 10\)"),
        (np.full((2, 5), -1), {"vocab_size": 10}, r"token id -1 is outside the vocabulary"),
        (np.full((2, 5), -1), {"name": "train captions"}, r"train captions hold a negative token id \(-1\)"),
    ],
)
def test_check_caption_ids_refuses_what_is_not_a_caption_array(captions, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        check_caption_ids(captions, **kwargs)


def test_check_caption_ids_returns_the_array() -> None:
    captions = [[1, 4, 2], [1, 5, 2]]
    np.testing.assert_array_equal(check_caption_ids(captions, rows=2, vocab_size=6), captions)
    assert check_caption_ids(np.zeros((0, 3), dtype=np.int32), allow_empty=True).shape == (0, 3)


DUPLICATE = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3, "dog": 4, "puppy": 4, "cat": 5}


def test_a_vocabulary_with_two_words_on_one_id_is_refused_naming_both_and_the_id() -> None:
    message = "gives id 4 to both 'dog' and 'puppy'"
    with pytest.raises(ValueError, match=message):
        idx_to_word_list(DUPLICATE)  # what every model builds its decoder from
    with pytest.raises(ValueError, match=f"vocab.json {message}"):
        check_special_ids(DUPLICATE, source="vocab.json")  # what the prepared file's writer checks
    with pytest.raises(ValueError, match=message):
        encode([["dog"]], DUPLICATE, max_length=3)
    with pytest.raises(ValueError, match="gives id 0 to both '<NULL>' and 'dog'"):
        idx_to_word_list({"<NULL>": 0, "dog": np.int64(0)})  # one id whatever its integer type


def test_check_unique_ids_accepts_gaps_and_leaves_non_integers_to_the_type_checks() -> None:
    check_unique_ids({"<NULL>": 0, "cat": 2, "dog": 3})  # CS231n's test vocabulary, with a gap
    with pytest.raises(ValueError, match="must be a non-negative integer"):
        idx_to_word_list({"<NULL>": 0, "dog": "1", "cat": "1"})
