"""Evaluating a model on a split of a prepared file: every photo captioned, scores, settings, errors, JSON, gallery,
attention maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import GRID_ENCODER, LOCATIONS, make_attention_model, make_model, make_prepared
from helpers import TOY_ENCODER as ENCODER
from rnncap import CaptioningRNN, decode_captions
from rnncap.apps.evaluation import DecodingSettings, describe_stats, evaluate_model
from rnncap.data import StoreError, load_grid, load_references, load_split
from rnncap.encoders import load_image
from rnncap.report.attention_maps import draw_attention

FAST_METRICS = ("BLEU", "ROUGE_L", "CIDEr")  # METEOR starts Java: seconds per call


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_prepared(tmp_path)


def test_every_photo_of_the_split_is_captioned_and_scored_on_the_0_1_scale(data: Path) -> None:
    result = evaluate_model(make_model(data), data, split="dev", metrics=FAST_METRICS)
    dev_ids = ["p3.png", "p4.png", "p5.png", "p6.png"]
    assert result.image_ids == dev_ids == list(result.candidates) == list(result.references)
    assert all(isinstance(caption, str) for caption in result.candidates.values())
    assert result.references == load_references(data, "dev")
    assert [p.name for p in result.image_paths] == dev_ids and result.image_paths[0].is_file()
    assert list(result.scores) == ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE_L", "CIDEr"]
    assert all(0 <= value <= 1 for value in result.scores.values())
    assert result.stats["captions"] == 4 and 0 <= result.stats["in_training"] <= 1  # the file has a train split
    assert result.encoder == ENCODER and result.split == "dev" and result.model_path is None
    assert result.decoding == DecodingSettings(beam_size=3, max_length=7, length_penalty=0.0)  # 6 words + <END>
    assert result.decode_seconds >= 0 and result.score_seconds >= 0 and result.photos_per_second > 0


def test_beam_one_is_greedy_and_batches_do_not_change_captions(data: Path) -> None:
    model = make_model(data)
    features = load_split(data, "dev").features
    greedy = evaluate_model(model, data, beam_size=1, batch_size=3, metrics="CIDEr")
    assert list(greedy.candidates.values()) == decode_captions(model.sample(features, 7), model.idx_to_word)
    assert list(greedy.candidates.values()) == decode_captions(model.beam_search(features, 1, 7), model.idx_to_word)
    beam = evaluate_model(model, data, beam_size=3, max_length=5, batch_size=3, metrics="CIDEr")
    assert list(beam.candidates.values()) == decode_captions(model.beam_search(features, 3, 5), model.idx_to_word)
    assert beam.candidates == evaluate_model(model, data, beam_size=3, max_length=5, metrics="CIDEr").candidates
    assert all(len(caption.split()) <= 5 for caption in beam.candidates.values())


class GridModel(CaptioningRNN):
    """A model that reads a grid of features per photo without attending: a CaptioningRNN of the averaged grid."""

    def __init__(self, model: CaptioningRNN, locations: int = LOCATIONS) -> None:
        vars(self).update(vars(model))  # the same weights, vocabulary and metadata
        self.pooled, self.locations = model, locations

    @property
    def feature_shape(self) -> tuple[int, int]:
        return self.locations, self.input_dim

    def init_state(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.pooled.init_state(self._check_features(features).mean(axis=1))


def test_models_that_read_a_grid_get_the_grid_features(data: Path) -> None:
    model = make_model(data)
    result = evaluate_model(GridModel(model), data, beam_size=2, batch_size=3, metrics="CIDEr")
    pooled_grids = load_grid(data, "dev").astype(np.float32).mean(axis=1)  # (M, D)
    expected = decode_captions(model.beam_search(pooled_grids, 2, 7), model.idx_to_word)
    assert list(result.candidates.values()) == expected
    assert result.model_path is None and result.details()["model"] == "(a model object)"


def test_the_models_own_max_length_is_the_default(data: Path) -> None:
    model = make_model(data)
    model.metadata["max_length"] = 3
    result = evaluate_model(model, data, metrics="CIDEr")
    assert result.decoding.max_length == 3
    assert all(len(caption.split()) <= 3 for caption in result.candidates.values())


def test_model_file_and_json(data: Path, tmp_path: Path) -> None:
    model_file = make_model(data).save(tmp_path / "model.npz")
    result = evaluate_model(model_file, data, metrics=FAST_METRICS)
    written = json.loads(result.write_json(tmp_path / "out" / "scores.json").read_text(encoding="utf-8"))
    assert written["scale"] == "0-1" and written["model"] == str(model_file) and written["data"] == str(data)
    assert written["split"] == "dev" and written["encoder"] == ENCODER and written["tokenizer"] == "rnncap"
    assert written["scores"] == pytest.approx(dict(result.scores)) and written["skipped"] == {}
    assert written["decoding"] == {"beam_size": 3, "max_length": 7, "length_penalty": 0.0}
    assert written["captions"] == result.candidates and written["stats"]["captions"] == 4
    assert set(written["seconds"]) == {"decode", "score"}


def test_gallery_of_the_first_photos(data: Path, tmp_path: Path) -> None:
    result = evaluate_model(make_model(data), data, metrics=FAST_METRICS)
    page = result.write_gallery(tmp_path / "gallery.html", size=2).read_text(encoding="utf-8")
    assert page.count("<figure>") == 2 and "p3.png" in page and "p5.png" not in page
    assert "0-100" in page and "distinct captions" in page and "beam search (beam 3" in page
    everything = result.write_gallery(tmp_path / "all.html", size=None).read_text(encoding="utf-8")
    assert everything.count("<figure>") == 4 and "photo not found" in everything  # p6.png is not on disk
    with pytest.raises(ValueError, match="gallery size"):
        result.write_gallery(tmp_path / "none.html", size=0)


def test_features_of_another_encoder_are_refused(data: Path) -> None:
    with pytest.raises(ValueError, match=r"'other-cnn' encoder, but .*toy.h5 holds features of 'toy-cnn'"):
        evaluate_model(make_model(data, encoder="other-cnn"), data)


def test_features_of_another_size_are_refused(data: Path) -> None:
    with pytest.raises(ValueError, match=r"features of shape \(5,\), but .*toy.h5 holds features of shape \(8,\)"):
        evaluate_model(make_model(data, input_dim=5), data)
    with pytest.raises(ValueError, match=r"shape \(9, 8\), but .*toy.h5 holds features of shape \(4, 8\)"):
        evaluate_model(GridModel(make_model(data), locations=9), data)


def test_a_model_that_does_not_name_its_encoder_is_evaluated_with_a_warning(data: Path) -> None:
    model = make_model(data)
    model.metadata = {}
    with pytest.warns(UserWarning, match="does not record the encoder"):
        result = evaluate_model(model, data, metrics="CIDEr")
    assert len(result.candidates) == 4


def test_a_missing_split_is_named(data: Path) -> None:
    with pytest.raises(StoreError, match=r"no split 'test' \(splits: \['train', 'dev'\]\)"):
        evaluate_model(make_model(data), data, split="test")


# ---- attention maps ---------------------------------------------------------------------------------------------


@pytest.fixture
def grid_data(tmp_path: Path) -> Path:
    return make_prepared(tmp_path, encoder=GRID_ENCODER, locations=49)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_weights_are_kept_for_the_first_photos_only(grid_data: Path, beam_size: int) -> None:
    model = make_attention_model(grid_data)
    result = evaluate_model(model, grid_data, beam_size=beam_size, batch_size=3, attention_maps=2, metrics="CIDEr")
    assert list(result.attention) == ["p3.png", "p4.png"]
    without = evaluate_model(model, grid_data, beam_size=beam_size, batch_size=3, attention_maps=0, metrics="CIDEr")
    assert without.candidates == result.candidates and without.attention == {}  # the same captions either way

    grids = load_grid(grid_data, "dev")[:2]
    if beam_size == 1:
        _, weights = model.sample(grids, 7, return_attention=True)
    else:
        _, weights = model.beam_search(grids, beam_size, 7, return_attention=True)
    for i, image_id in enumerate(result.attention):
        words = result.candidates[image_id].split()
        kept = result.attention[image_id]
        assert kept.shape == (len(words), 7, 7)  # one (h, w) map per word, not for <END>
        np.testing.assert_allclose(kept, weights[i, : len(words)].reshape(-1, 7, 7), rtol=1e-5)
        np.testing.assert_allclose(kept.sum(axis=(1, 2)), 1, rtol=1e-5)
    assert len(evaluate_model(model, grid_data, attention_maps=None, metrics="CIDEr").attention) == 4  # every photo


def test_the_gallery_shows_the_attention_maps(grid_data: Path, tmp_path: Path) -> None:
    result = evaluate_model(make_attention_model(grid_data), grid_data, metrics="CIDEr")
    assert len(result.attention) == 4  # the default: the first 100 photos, the gallery's
    page = result.write_gallery(tmp_path / "gallery.html", size=None).read_text(encoding="utf-8")
    # p6.png is missing from disk: a placeholder, and no map to draw it on.
    assert page.count('<img class="extra"') == 3 and "where the model looked for each word" in page
    assert result.attention_map("p6.png") is None

    image_id = "p4.png"
    square = load_image(result.image_paths[1], 224)  # the square efficientnet-lite0 read
    expected = draw_attention(square, result.candidates[image_id].split(), result.attention[image_id])
    assert np.array_equal(np.asarray(result.attention_map(image_id)), np.asarray(expected))


def test_no_attention_maps_for_a_grid_rnncap_does_not_know(data: Path, tmp_path: Path) -> None:
    model = make_attention_model(data, encoder=ENCODER, locations=LOCATIONS)
    with pytest.warns(UserWarning, match=r"no attention maps: the features come from 'toy-cnn', an unknown grid"):
        result = evaluate_model(model, data, metrics="CIDEr")
    assert result.attention == {} and len(result.candidates) == 4
    (tmp_path / "lite0").mkdir()
    mislabelled = make_prepared(tmp_path / "lite0", encoder=GRID_ENCODER, locations=LOCATIONS)  # 4 cells, not 49
    with pytest.warns(UserWarning, match=r"'efficientnet-lite0', a 7 x 7 grid, over which .* model's 4 attention"):
        evaluate_model(make_attention_model(mislabelled, locations=LOCATIONS), mislabelled, metrics="CIDEr")
    assert evaluate_model(make_model(data), data, metrics="CIDEr").attention == {}  # models that do not attend
    with pytest.raises(ValueError, match="attention_maps must be a number of photos >= 0 or None for all, got -1"):
        evaluate_model(model, data, attention_maps=-1)


def test_describe_stats() -> None:
    stats = {"captions": 1000, "distinct": 0.6734, "vocabulary": 2851, "mean_length": 9.44, "in_training": 0.2}
    stats |= {"stutter": 0.003, "cut_off": 0.0125}
    assert describe_stats(stats) == {
        "distinct captions": "67.3% of 1,000",
        "words used": "2,851",
        "mean length": "9.4 words",
        "words repeated back to back": "0.3%",
        "cut off mid-phrase": "1.2%",
        "copied from training captions": "20.0%",
    }
    del stats["in_training"]
    assert "copied from training captions" not in describe_stats(stats)
