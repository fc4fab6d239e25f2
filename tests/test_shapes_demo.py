"""The demo end to end: pictures, vocabulary, training with the Trainer, decoding, files."""

from __future__ import annotations

import numpy as np
import pytest

from rnncap import CaptioningRNN
from rnncap.apps import shapes_demo


def test_shapes_differ_and_captions_describe_them():
    rng = np.random.default_rng(0)
    pictures, captions = shapes_demo.make_pictures(20, rng)
    assert pictures.shape == (20, shapes_demo.SIZE, shapes_demo.SIZE, 3) and pictures.dtype == np.float32
    assert all(c.startswith("a ") and len(c.split()) == 7 for c in captions)
    masks = {shape: shapes_demo.shape_mask(shape, (12, 12), 6.5) for shape in shapes_demo.SHAPES}
    assert len({m.sum() for m in masks.values()}) == 3  # three different pixel counts: distinguishable shapes


@pytest.mark.slow
def test_demo_learns_to_caption_unseen_pictures(tmp_path, capsys):
    accuracy = shapes_demo.main(["--out", str(tmp_path), "--epochs", "8", "--train-size", "2500"])
    assert accuracy["greedy"] > 0.8 and accuracy["beam 3"] > 0.8  # chance is 1 in 120 captions
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert "unseen pictures captioned exactly right" in capsys.readouterr().out
    model = CaptioningRNN.load(tmp_path / "best.npz")
    assert model.cell_type == "lstm"
