"""The HTML gallery: valid, self-contained (embedded thumbnails), escaped, and never stopped by a bad photo."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rnncap.metrics import Scores
from rnncap.report.gallery import GalleryEntry, write_gallery

VOID = {"meta", "img", "br", "hr", "link", "input"}  # elements without a closing tag


class Page(HTMLParser):
    """Parses a page, checks that every element closes in order, and collects images, placeholders and text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.placeholders: list[str] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()
        assert not self.open, f"elements never closed: {self.open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attributes = {key: value or "" for key, value in attrs}
        if tag == "img":
            self.images.append(attributes)
        elif "missing" in attributes.get("class", "").split():
            self.placeholders.append(attributes["aria-label"])
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def decode_image(src: str) -> Image.Image:
    prefix = "data:image/jpeg;base64,"
    assert src.startswith(prefix), src[:40]
    return Image.open(io.BytesIO(base64.b64decode(src[len(prefix) :])))


def test_valid_self_contained_page_with_thumbnails(tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    Image.new("RGB", (1000, 500), (200, 30, 30)).save(big)
    entries = [
        GalleryEntry(big, "a red wall", references=["A red wall.", "Red paint."], label="big.jpg"),
        GalleryEntry(Image.new("L", (60, 90), 128), "a grey square"),  # a PIL image, grey
        GalleryEntry(np.zeros((20, 30, 4), dtype=np.uint8), "darkness", extra=np.full((50, 900, 3), 255, np.uint8)),
    ]
    path = write_gallery(tmp_path / "sub" / "gallery.html", entries, title="Toy gallery")
    page = Page(path.read_text(encoding="utf-8"))
    assert page.tags[:2] == ["html", "head"] and page.tags.count("figure") == 3
    assert len(page.images) == 4 and not page.placeholders
    sizes = [decode_image(image["src"]).size for image in page.images]  # every picture embedded, none linked
    assert sizes == [(224, 112), (60, 90), (30, 20), (672, 37)]  # shrunk to the limits, never enlarged
    assert [(int(image["width"]), int(image["height"])) for image in page.images] == sizes
    assert page.images[0]["alt"] == "a red wall" and page.images[3]["class"] == "extra"
    text = " ".join(page.text)
    assert "Toy gallery" in text and "A red wall." in text and "big.jpg" in text and "3 photos" in text
    assert page.tags.count("ul") == 1  # references are optional: only the first photo has them


def test_text_is_escaped(tmp_path: Path) -> None:
    nasty = '<script>alert("x")</script> & <b>bold</b>'
    entry = GalleryEntry(None, nasty, references=[nasty], label=nasty)
    path = write_gallery(tmp_path / "g.html", [entry], title=nasty, habits={nasty: nasty}, details={"model": nasty})
    raw = path.read_text(encoding="utf-8")
    assert "<script>" not in raw and "<b>" not in raw and "&lt;script&gt;" in raw
    page = Page(raw)
    assert "script" not in page.tags and "b" not in page.tags
    assert " ".join(page.text).count(nasty) >= 6  # title, heading, label, caption, reference, habit, details


def test_missing_and_unreadable_photos_become_placeholders(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    entries = [
        GalleryEntry(tmp_path / "moved-away.jpg", "a missing photo"),
        GalleryEntry(broken, "a broken photo"),
        GalleryEntry(None, "no photo at all"),
        GalleryEntry(np.zeros((4, 4, 3)), "a float array"),  # float64 pixels: not a picture rnncap guesses at
    ]
    page = Page(write_gallery(tmp_path / "g.html", entries).read_text(encoding="utf-8"))
    assert not page.images and page.tags.count("figure") == 4
    missing, unreadable, none, floats = page.placeholders
    assert missing == f"photo not found: {tmp_path / 'moved-away.jpg'}"
    assert unreadable.startswith(f"unreadable picture: {broken} (") and len(unreadable) > len(str(broken)) + 23
    assert none == "no photo"
    assert floats == "unreadable picture: ndarray (picture arrays must be uint8, got float64)"
    assert "a broken photo" in " ".join(page.text)


def test_scores_on_the_0_100_scale_habits_and_details(tmp_path: Path) -> None:
    scores = Scores({"BLEU-4": 0.2345, "CIDEr": 0.5}, skipped={"METEOR": "no Java"})
    path = write_gallery(
        tmp_path / "g.html",
        [GalleryEntry(None, "a dog")],
        scores=scores,
        habits={"distinct captions": "67.3% of 1,000"},
        details={"decoding": "greedy search"},
    )
    text = " ".join(Page(path.read_text(encoding="utf-8")).text)
    assert "0-100 scale" in text
    for shown in ("BLEU-4", "23.4", "CIDEr", "50.0", "METEOR", "skipped (no Java)", "67.3% of 1,000", "greedy search"):
        assert shown in text
    bare = " ".join(Page(write_gallery(tmp_path / "bare.html", []).read_text(encoding="utf-8")).text)
    assert "Metric" not in bare and "0 photos" in bare  # no summary when nothing is given


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="thumbnail_size and extra_size must be positive"):
        write_gallery(tmp_path / "g.html", [], thumbnail_size=0)
