"""Captions to tokens to ids and back: the special tokens, the COCO-evaluation tokenizer, a deterministic
vocabulary, padded id arrays, and id -> word decoding. What the data readers, the models and the metrics share.

``tokenize`` follows the tokenizer every COCO caption metric uses (pycocoevalcap's ``PTBTokenizer``: Stanford
CoreNLP's PTB tokenizer, lowercased, with the punctuation tokens ``'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - --
... ;`` removed), so that the words a model learns are the words it is scored on. One regular expression stands in
for CoreNLP; it agrees with it on the cases captions contain:

- lowercase; every character that is not a letter or digit separates tokens and is dropped
  (``"A dog, running."`` -> ``["a", "dog", "running"]``);
- negations and clitics are split off as PTB does: ``"don't"`` -> ``["do", "n't"]``, ``"can't"`` -> ``["ca",
  "n't"]``, ``"dog's"`` and Flickr8k's pre-split ``"dog 's"`` -> ``["dog", "'s"]`` (also ``'re 've 'll 'm 'd``);
  the curly apostrophe counts as ``'``;
- hyphenated words stay whole (``"black-and-white"``), as in the CoreNLP 3.4 that pycocoevalcap ships, and so do
  numbers with a decimal point or thousands separator (``"1.5"``, ``"10,000"``);
- where it differs from CoreNLP: ``"cannot"`` stays one token (PTB: ``"can not"``), other symbols (``& $ % #``)
  are dropped rather than kept, and quoted words lose their quotes without PTB's quote tokens (which the
  metrics remove anyway).

A caption yields no tokens exactly when it holds no letter or digit: :func:`has_words` answers that without
tokenizing, and the readers use it to reject empty captions where they can still name the file and line.

References: pycocoevalcap ``tokenizer/ptbtokenizer.py``; CS231n ``coco_utils.py`` (id layout
``<START> w... <END> <NULL>...``).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

NULL, START, END, UNK = "<NULL>", "<START>", "<END>", "<UNK>"
NULL_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3


_WORD = r"[^\W_]+"  # a run of letters or digits (any script)
_TOKEN = re.compile(
    rf"""
      \d+(?:[.,]\d+)+                  # 1.5, 10,000
    | {_WORD}(?=n't\b)                 # "do" of "don't": PTB splits the negation off
    | n't\b
    | '(?:s|re|ve|ll|m|d)\b            # clitics: 's 're 've 'll 'm 'd
    | {_WORD}(?:-{_WORD})*             # words, hyphenated words kept whole
    """,
    re.VERBOSE,
)
_HAS_WORD = re.compile(_WORD)

SPECIAL_IDS = {NULL: NULL_ID, START: START_ID, END: END_ID, UNK: UNK_ID}


def check_special_ids(word_to_idx: Mapping[str, int], source: str = "the vocabulary") -> None:
    """Refuse a vocabulary that does not give the four special tokens their standard ids, or that gives two words
    one id (:func:`check_unique_ids`); ``source`` names it."""
    for token, idx in SPECIAL_IDS.items():
        if word_to_idx.get(token) != idx:
            raise ValueError(f"{source} must map {token} to id {idx}, got {word_to_idx.get(token)!r}")
    check_unique_ids(word_to_idx, source)


def check_unique_ids(word_to_idx: Mapping[str, int], source: str = "the vocabulary") -> None:
    """Refuse a vocabulary that gives two words the same id: decoding could only ever produce one of them, and
    captions encoded with it would mean two things. The message names both words and the id."""
    shared = shared_id(word_to_idx)
    if shared is not None:
        idx, first, second = shared
        raise ValueError(f"{source} gives id {idx} to both {first!r} and {second!r}: every id must name one word")


def shared_id(word_to_idx: Mapping[str, int]) -> tuple[int, str, str] | None:
    """The first id that two words share, as ``(id, first word, second word)``; None when every id is unique.
    Values that are not integers are skipped: the callers' type checks name them."""
    owner: dict[int, str] = {}
    for word, idx in word_to_idx.items():
        if not isinstance(idx, int | np.integer):
            continue
        key = int(idx)  # np.int64(5) and 5 are one id
        if key in owner:
            return key, owner[key], word
        owner[key] = word
    return None


def check_caption_ids(
    captions: np.ndarray,
    *,
    name: str = "captions",
    rows: int | None = None,
    allow_empty: bool = False,
    min_length: int = 2,
    vocab_size: int | None = None,
) -> np.ndarray:
    """Refuse anything but a (K, T) array of token ids; returns it as an array.

    Args:
        captions: the array to check.
        name: how messages name it.
        rows: the K it must have; None: any K >= 1 (K >= 0 with ``allow_empty``).
        min_length: the smallest T (2: ``<START>`` and one target).
        vocab_size: V, ids must be in [0, V); None: only non-negative.
    """
    captions = np.asarray(captions)
    if rows is None:
        fewest = 0 if allow_empty else 1
        shape_ok = captions.ndim == 2 and captions.shape[0] >= fewest
        wanted = f"(K, T) with K >= {fewest} and T >= {min_length}"
    else:
        shape_ok, wanted = captions.ndim == 2 and captions.shape[0] == rows, f"({rows}, T) with T >= {min_length}"
    if not shape_ok or captions.shape[1] < min_length:
        raise ValueError(f"{name} must have shape {wanted}, got {captions.shape}")
    if not np.issubdtype(captions.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {captions.dtype}")
    if captions.size:
        low, high = int(captions.min()), int(captions.max())
        if vocab_size is not None and (low < 0 or high >= vocab_size):
            bad = low if low < 0 else high
            raise ValueError(f"{name}: token id {bad} is outside the vocabulary [0, {vocab_size})")
        if low < 0:
            raise ValueError(f"{name} hold a negative token id ({low})")
    return captions


def tokenize(caption: str) -> list[str]:
    """Lowercase ``caption`` and split it into PTB-style word tokens without punctuation (see the module docstring).

    >>> tokenize("A man's dog doesn't swim, it runs.")
    ['a', 'man', "'s", 'dog', 'does', "n't", 'swim', 'it', 'runs']
    """
    return _TOKEN.findall(caption.lower().replace("\u2019", "'"))


def has_words(caption: str) -> bool:
    """Whether ``tokenize(caption)`` is non-empty, i.e. whether the caption holds a letter or digit."""
    return _HAS_WORD.search(caption) is not None


def build_vocab(tokenized_captions: Iterable[Sequence[str]], min_count: int = 5) -> dict[str, int]:
    """The vocabulary of the words seen at least ``min_count`` times, deterministic for a given input.

    Args:
        tokenized_captions: captions as token lists (from :func:`tokenize`), normally of the training split only.
        min_count: rarer words are left out and will be encoded as ``<UNK>``.

    Returns:
        word_to_idx: ``<NULL>=0 <START>=1 <END>=2 <UNK>=3``, then the words by descending count, ties in
        alphabetical order, with ids 4, 5, ...
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    counts = Counter(word for tokens in tokenized_captions for word in tokens)
    words = sorted(
        (w for w, c in counts.items() if c >= min_count and w not in SPECIAL_IDS), key=lambda w: (-counts[w], w)
    )
    return {word: idx for idx, word in enumerate((*SPECIAL_IDS, *words))}


def encode(tokenized: Sequence[Sequence[str]], word_to_idx: Mapping[str, int], max_length: int) -> np.ndarray:
    """Token lists to the padded id array the models train on.

    Args:
        tokenized: K captions as token lists, each with at least one token.
        word_to_idx: the vocabulary; it must give the special tokens their standard ids. Unknown words become
            ``<UNK>``.
        max_length: the most words kept per caption; longer captions are truncated (their ``<END>`` is kept).

    Returns:
        (K, max_length + 2) int32: ``<START> w_1 ... w_n <END> <NULL>...`` with n = min(len, max_length).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    check_special_ids(word_to_idx)
    K = len(tokenized)
    lengths = np.fromiter((min(len(t), max_length) for t in tokenized), dtype=np.int64, count=K)
    if K and lengths.min() == 0:
        empty = np.flatnonzero(lengths == 0)
        raise ValueError(f"{empty.size} caption(s) have no tokens (indices {empty[:10].tolist()}); remove them first")
    # The dictionary look-up is the only per-token Python work; placing the ids is one scatter.
    get = word_to_idx.get
    flat = np.fromiter(
        (get(word, UNK_ID) for tokens in tokenized for word in tokens[:max_length]), dtype=np.int32, count=lengths.sum()
    )
    out = np.full((K, max_length + 2), NULL_ID, dtype=np.int32)
    out[:, 0] = START_ID
    rows = np.repeat(np.arange(K), lengths)
    starts = np.cumsum(lengths) - lengths  # offset of each caption's first word in `flat`
    cols = 1 + np.arange(flat.size) - np.repeat(starts, lengths)
    out[rows, cols] = flat
    out[np.arange(K), lengths + 1] = END_ID
    return out


def idx_to_word_list(word_to_idx: Mapping[str, int]) -> list[str]:
    """The inverse table of ``word_to_idx``, as a list indexed by id; its length is the vocabulary size V.

    As in CS231n, V is the number of words, and ids nobody names read as ``<UNK>``. CS231n's own tests use a
    vocabulary with a gap (``{'<NULL>': 0, 'cat': 2, 'dog': 3}``, so V = 3): a word whose id is V or more cannot
    be represented, and gets a warning rather than an error so that those tests still run.
    """
    if word_to_idx.get(NULL) != NULL_ID:
        raise ValueError(f"the vocabulary must map {NULL} to id {NULL_ID}, got {word_to_idx.get(NULL)!r}")
    words = [UNK] * len(word_to_idx)
    for word, idx in word_to_idx.items():
        if not isinstance(idx, int | np.integer) or idx < 0:
            raise ValueError(f"vocabulary id of {word!r} must be a non-negative integer, got {idx!r}")
    check_unique_ids(word_to_idx)  # after the type checks, so that a bad id gets the message about its type
    for word, idx in word_to_idx.items():
        if idx >= len(words):
            warnings.warn(
                f"word {word!r} has id {idx}, outside the vocabulary size {len(words)}: it can never be produced",
                stacklevel=3,
            )
            continue
        words[idx] = word
    return words


def decode_captions(ids: np.ndarray, idx_to_word: Sequence[str]) -> list[str]:
    """Turn (N, T) token ids into N strings: stops at ``<END>``, leaves out ``<NULL>`` and ``<START>``."""
    ids = np.atleast_2d(ids)
    captions = []
    for row in ids.tolist():  # one string per caption; the words are joined in Python anyway
        words = []
        for idx in row:
            word = idx_to_word[idx]
            if word == END:
                break
            if word not in (NULL, START):
                words.append(word)
        captions.append(" ".join(words))
    return captions
