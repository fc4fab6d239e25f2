"""Attention maps: each word's weights land on their grid cell of the photo, one panel per word, PNG written whole."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rnncap.report.attention_maps import attention_overlay, draw_attention, write_attention

GREY = 160


def grey_square(size: int = 70) -> np.ndarray:
    """A uniform photo: whatever brightness varies in an overlay comes from the attention."""
    return np.full((size, size, 3), GREY, dtype=np.uint8)


def one_hot(shape: tuple[int, int], row: int, col: int) -> np.ndarray:
    weights = np.zeros(shape, dtype=np.float32)
    weights[row, col] = 1.0
    return weights


@pytest.mark.parametrize(("grid", "cell"), [((7, 7), (0, 0)), ((7, 7), (2, 5)), ((3, 5), (1, 4)), ((9, 9), (8, 3))])
def test_a_cell_lights_up_its_own_block_of_the_photo(grid, cell) -> None:
    size = 90  # divisible by every grid side above: block (i, j) is rows i*S/h .. (i+1)*S/h
    overlay = attention_overlay(grey_square(size), one_hot(grid, *cell))
    assert overlay.shape == (size, size, 3) and overlay.dtype == np.uint8
    brightness = overlay.mean(axis=2)
    block_h, block_w = size // grid[0], size // grid[1]
    top, left = cell[0] * block_h, cell[1] * block_w
    block = brightness[top : top + block_h, left : left + block_w]
    peak_row, peak_col = np.unravel_index(brightness.argmax(), brightness.shape)
    assert top <= peak_row < top + block_h and left <= peak_col < left + block_w
    assert brightness.max() == pytest.approx(GREY, abs=1)  # the peak keeps the photo's brightness
    assert block.mean() > 2 * np.median(brightness)  # the rest is dimmed
    assert brightness.min() >= round(0.25 * GREY) - 1  # but never to black


def test_attention_everywhere_leaves_the_photo_as_it_is() -> None:
    photo = np.random.default_rng(0).integers(0, 256, size=(56, 56, 3), dtype=np.uint8)
    uniform = np.full((7, 7), 1 / 49)
    assert np.array_equal(attention_overlay(photo, uniform), photo)
    assert np.array_equal(attention_overlay(photo, np.zeros((7, 7))), photo)  # no weights at all: nothing to show
    assert attention_overlay(photo, uniform, size=32).shape == (32, 32, 3)


def panel_pixels(image: Image.Image) -> int:
    """Pixels of the grey photo in a map drawn with uniform attention, which leaves the photo as it is: the panels.

    Anti-aliased black titles on white may hit the photo's grey by chance, a few pixels at most.
    """
    return int((np.asarray(image) == GREY).all(axis=2).sum())


def test_one_panel_per_word_in_rows_of_columns() -> None:
    panel = 50
    square = grey_square(70)

    def drawn(count: int, columns: int = 5) -> Image.Image:
        weights = np.full((count, 7, 7), 1 / 49)
        image = draw_attention(square, [f"w{i}" for i in range(count)], weights, columns=columns, panel_size=panel)
        assert image.mode == "RGB"
        assert abs(panel_pixels(image) - count * panel * panel) < 0.01 * panel * panel  # the whole photo per word
        return image

    sizes = {count: drawn(count).size for count in (1, 2, 5, 6, 11)}
    (w1, h1), (w2, h2), (w5, h5), (w6, h6), (w11, h11) = sizes.values()
    step = w2 - w1  # one more column
    assert step > panel and w5 == w1 + 4 * step == w6 == w11  # at most 5 columns
    assert h1 == h2 == h5 < h6 < h11 and h11 - h6 == h6 - h1 > panel  # rows of equal height
    assert drawn(6, columns=2).size == (w2, h1 + 2 * (h6 - h1))  # 3 rows of 2


def test_a_caption_without_words_shows_the_photo() -> None:
    image = draw_attention(grey_square(), [], np.zeros((0, 7, 7)), panel_size=40)
    one_word = draw_attention(grey_square(), ["dog"], np.ones((1, 7, 7)), panel_size=40)
    assert image.size == one_word.size and abs(panel_pixels(image) - 40 * 40) < 16


def test_long_words_are_cut_to_their_panel() -> None:
    image = draw_attention(grey_square(), ["a" * 200, "dog"], np.ones((2, 7, 7)), panel_size=40)
    assert image.width < 200  # the title did not widen its panel


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"weights must be \(T, h, w\) with T = 2 words, got shape \(3, 7, 7\)"):
        draw_attention(grey_square(), ["a", "dog"], np.ones((3, 7, 7)))
    with pytest.raises(ValueError, match=r"\(S, S, 3\) uint8 square the encoder read, got \(70, 60, 3\) uint8"):
        draw_attention(grey_square()[:, :60], ["dog"], np.ones((1, 7, 7)))
    with pytest.raises(ValueError, match="uint8 square the encoder read, got .* float32"):
        attention_overlay(grey_square().astype(np.float32), np.ones((7, 7)))
    with pytest.raises(ValueError, match=r"one word's \(h, w\) grid, got shape \(49,\)"):
        attention_overlay(grey_square(), np.ones(49))
    with pytest.raises(ValueError, match="columns must be a positive integer"):
        draw_attention(grey_square(), ["dog"], np.ones((1, 7, 7)), columns=0)
    with pytest.raises(ValueError, match="panel size must be a positive number of pixels"):
        draw_attention(grey_square(), ["dog"], np.ones((1, 7, 7)), panel_size=0)


def test_write_attention_writes_the_png_whole(tmp_path) -> None:
    words, weights = ["a", "dog", "runs"], np.random.default_rng(0).random((3, 7, 7))
    path = write_attention(tmp_path / "maps" / "dog.png", grey_square(), words, weights, panel_size=40)
    assert path == tmp_path / "maps" / "dog.png"
    with Image.open(path) as written:
        assert written.format == "PNG"
        assert np.array_equal(
            np.asarray(written), np.asarray(draw_attention(grey_square(), words, weights, panel_size=40))
        )
    assert [p.name for p in path.parent.iterdir()] == ["dog.png"]  # no temporary file left behind


def test_a_failed_write_leaves_neither_file_nor_debris(tmp_path, monkeypatch) -> None:
    def broken_save(self, file, *args, **kwargs) -> None:
        file.write(b"\x89PNG half a picture")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_attention(tmp_path / "dog.png", grey_square(), ["dog"], np.ones((1, 7, 7)))
    assert list(tmp_path.iterdir()) == []
