"""Records -> arrays (rnncap.data.records): prepare_records and summary_line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnncap.data import Dataset, ImageRecord, prepare_records, summary_line
from rnncap.text import UNK_ID


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
