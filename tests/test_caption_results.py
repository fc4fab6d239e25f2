"""rnncap.apps.caption_results: results as JSON records, their attention maps written, and their gallery page."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rnncap.apps.caption_results import AttendedCaption, CaptionResult, write_caption_gallery


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photos" / "dog.jpg"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


def attended(caption: str = "a dog runs") -> AttendedCaption:
    words = tuple(caption.split())
    weights = np.random.default_rng(1).dirichlet(np.ones(4), size=len(words)).reshape(len(words), 2, 2)
    square = np.random.default_rng(2).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return AttendedCaption(caption, words, weights, square)


def test_writing_the_maps_names_their_file_in_place_of_them(photo, tmp_path) -> None:
    result = CaptionResult(str(photo), "a dog runs", attention=attended())
    written = result.write_attention(tmp_path / "maps" / "dog.png")
    assert written.attention is None and written.attention_file == tmp_path / "maps" / "dog.png"
    assert written.as_dict() == {"image": str(photo), "caption": "a dog runs", "attention": str(written.attention_file)}
    with Image.open(written.attention_file) as image:
        assert np.array_equal(np.asarray(image), np.asarray(result.attention.draw()))
    with pytest.raises(ValueError, match="bad.jpg: no attention maps to write"):
        CaptionResult("bad.jpg", None, "OSError: broken").write_attention(tmp_path / "bad.png")


def test_the_gallery_of_captioned_files(photo, tmp_path) -> None:
    results = [CaptionResult(str(photo), "a dog & a <cat>"), CaptionResult("gone.jpg", None, "OSError: missing")]
    page = write_caption_gallery(tmp_path / "out" / "g.html", results, model="tiny.npz", encoder="enc", beam_size=1)
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 1 and "photo not found: gone.jpg" in text
    assert "a dog &amp; a &lt;cat&gt;" in text and "(unreadable: OSError: missing)" in text
    assert "<th>model</th><td>tiny.npz</td>" in text and "<th>encoder</th><td>enc</td>" in text
    assert "greedy search" in text and "<title>rnncap: captions of your photos</title>" in text
    assert '<img class="extra"' not in text
    beam = write_caption_gallery(tmp_path / "beam.html", results[:1], model="m", encoder="e", beam_size=4, title="T")
    assert "beam search, width 4" in beam.read_text() and "<h1>T</h1>" in beam.read_text()


def test_an_empty_caption_is_no_unreadable_photo(photo, tmp_path) -> None:
    page = write_caption_gallery(
        tmp_path / "g.html", [CaptionResult(str(photo), "")], model="m", encoder="e", beam_size=3
    )
    assert "unreadable" not in page.read_text()


def test_the_gallery_shows_maps_from_their_files_or_drawn(photo, tmp_path) -> None:
    result = CaptionResult(str(photo), "a dog runs", attention=attended())
    drawn = write_caption_gallery(tmp_path / "drawn.html", [result], model="m", encoder="e", beam_size=3)
    written = result.write_attention(tmp_path / "maps" / "dog.png")
    from_file = write_caption_gallery(tmp_path / "file.html", [written], model="m", encoder="e", beam_size=3)
    assert '<img class="extra"' in drawn.read_text() and "where the model looked for each word" in drawn.read_text()
    assert from_file.read_text() == drawn.read_text()  # PNG is lossless: the same picture either way
