"""rnncap.Captioner: photos of every format -> captions, batched = one by one, model files and their errors;
attention models: the grid read, the weights of every word returned."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import GRID_ENCODER as ENCODER
from helpers import make_bad_files, make_photos, tiny_attention_model, tiny_model
from rnncap import Captioner, CaptioningRNN, ModelFileError, decode_captions
from rnncap.apps import captioner as captioner_module
from rnncap.apps.captioner import AttendedCaption, CaptionResult, find_images, model_path
from rnncap.encoders import load_encoder, load_image


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    # The cache directory conftest's export_cache fixture uses: one ONNX export per test session.
    return load_encoder(ENCODER, cache_dir=tmp_path_factory.getbasetemp() / "rnncap-cache")


@pytest.fixture(scope="module")
def captioner(encoder) -> Captioner:
    return Captioner(tiny_model(), encoder)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> dict[str, Path]:
    return make_photos(tmp_path_factory.mktemp("photos"))


def reference_caption(model: CaptioningRNN, encoder, path: Path, beam_size: int = 3) -> str:
    """What the captioner should say, composed by hand from the encoder and the model."""
    pooled, _ = encoder.encode([load_image(path, encoder.image_size)], with_grid=False)
    ids = model.beam_search(pooled, beam_size, max_length=6) if beam_size > 1 else model.sample(pooled, 6)
    return decode_captions(ids, model.idx_to_word)[0]


# ---- captions ----------------------------------------------------------------------------------------------------


def test_every_format_gets_the_caption_of_encoder_then_model(captioner, encoder, photos) -> None:
    for name, path in photos.items():
        caption = captioner.caption(path)
        assert caption == reference_caption(captioner.model, encoder, path), name
        assert len(caption.split()) == 6 and all(word in captioner.model.word_to_idx for word in caption.split())
    captions = {captioner.caption(path) for path in photos.values()}
    assert len(captions) > len(photos) // 2  # the photo matters: not one caption for everything


def test_paths_images_and_arrays_give_the_same_caption(captioner, photos) -> None:
    path = photos["png"]  # lossless, so the file, its decoded image and its pixels are the same photo
    with Image.open(path) as image:
        image.load()
        by_image = captioner.caption(image)
        by_array = captioner.caption(np.asarray(image))
    assert captioner.caption(path) == captioner.caption(str(path)) == by_image == by_array


def test_batched_equals_one_by_one(captioner, photos) -> None:
    with Image.open(photos["webp"]) as webp:
        images = [*photos.values(), webp.copy(), np.asarray(webp)]
    one_by_one = [captioner.caption(image) for image in images]
    assert captioner.caption_many(images, batch_size=4) == one_by_one  # batches of 4, 4, 4, 2
    assert captioner.caption_many(images, batch_size=64) == one_by_one  # all in one batch
    assert captioner.caption_many([]) == []


def test_beam_one_is_greedy_search(captioner, encoder, photos) -> None:
    for path in photos.values():
        assert captioner.caption(path, beam_size=1) == reference_caption(captioner.model, encoder, path, beam_size=1)


def test_caption_features_equals_caption(captioner, encoder, photos) -> None:
    paths = list(photos.values())[:3]
    pooled, _ = encoder.encode([load_image(p, encoder.image_size) for p in paths], with_grid=False)
    assert captioner.caption_features(pooled) == captioner.caption_many(paths)


def test_few_photos_are_decoded_on_one_blas_thread(captioner, encoder, photos, monkeypatch) -> None:
    from threadpoolctl import ThreadpoolController

    asked = []

    class Recording(ThreadpoolController):
        def limit(self, *, limits=None, user_api=None):
            asked.append((limits, user_api))
            return super().limit(limits=limits, user_api=user_api)

    monkeypatch.setattr(captioner_module, "_BLAS", Recording())
    pooled, _ = encoder.encode([load_image(photos["jpeg"], encoder.image_size)], with_grid=False)
    one = captioner.caption_features(pooled, beam_size=2)
    many = captioner.caption_features(np.repeat(pooled, captioner_module.SINGLE_THREAD_ROWS, axis=0), beam_size=2)
    assert asked == [(1, "blas"), (None, "blas")]
    assert set(many) == set(one)  # the same photo, the same caption, however many threads


def test_max_length_comes_from_the_metadata_unless_given(encoder, photos) -> None:
    path = photos["jpeg"]
    assert len(Captioner(tiny_model(), encoder).caption(path).split()) == 6
    assert len(Captioner(tiny_model(), encoder).caption(path, max_length=3).split()) == 3
    default = Captioner(tiny_model(metadata={"encoder": ENCODER}), encoder)
    assert default.max_length == captioner_module.DEFAULT_MAX_LENGTH
    assert len(default.caption(path).split()) == captioner_module.DEFAULT_MAX_LENGTH


def test_bad_arguments_are_refused(captioner, photos) -> None:
    with pytest.raises(ValueError, match="beam_size"):
        captioner.caption(photos["jpeg"], beam_size=0)
    with pytest.raises(ValueError, match="max_length"):
        captioner.caption(photos["jpeg"], max_length=0)
    with pytest.raises(ValueError, match="batch_size"):
        captioner.caption_many([photos["jpeg"]], batch_size=0)
    with pytest.raises(TypeError, match="PIL image or a uint8 array"):
        captioner.caption(42)
    with pytest.raises(TypeError, match="uint8"):
        captioner.caption(np.zeros((8, 8, 3), dtype=np.float32))


# ---- unreadable files -------------------------------------------------------------------------------------------


def test_an_unreadable_file_raises_with_its_path(captioner, photos, tmp_path) -> None:
    for path in make_bad_files(tmp_path, photos["jpeg"]).values():
        with pytest.raises(OSError, match=str(path)):
            captioner.caption_many([photos["jpeg"], path])


def test_caption_files_reports_unreadable_files_and_captions_the_rest(captioner, photos, tmp_path) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])
    good = list(photos.values())
    paths = [bad["truncated"], good[0], bad["corrupt"], *good[1:4], bad["text"], bad["missing"], *good[4:]]
    results = list(captioner.caption_files(paths, batch_size=3))
    assert [r.image for r in results] == [str(p) for p in paths]  # every file, in order
    failed = {r.image: r.error for r in results if r.error is not None}
    assert failed.keys() == {str(p) for p in bad.values()}
    assert "truncated" in failed[str(bad["truncated"])].lower()
    assert "cannot identify image file" in failed[str(bad["text"])]
    assert "No such file" in failed[str(bad["missing"])]
    assert all(not error.startswith(image) for image, error in failed.items())  # the path is not repeated
    assert [r.caption for r in results if r.error is None] == captioner.caption_many(good)
    assert all(r.caption is None for r in results if r.error is not None)


def test_caption_results_as_dicts() -> None:
    assert CaptionResult("a.jpg", "a dog").as_dict() == {"image": "a.jpg", "caption": "a dog"}
    assert CaptionResult("b.jpg", None, "OSError: broken").as_dict() == {
        "image": "b.jpg",
        "caption": None,
        "error": "OSError: broken",
    }


# ---- folders ----------------------------------------------------------------------------------------------------


def test_find_images_expands_folders_and_keeps_files(tmp_path, photos) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ["b.JPEG", "a.png", "c.webp", "d.gif", "e.bmp", "f.tif", "g.tiff", "h.jpg", "notes.txt", "._x.jpg"]:
        (folder / name).write_bytes(b"")
    (folder / "sub").mkdir()
    (folder / "sub" / "deeper.jpg").write_bytes(b"")
    expected = [
        str(folder / name) for name in ["a.png", "b.JPEG", "c.webp", "d.gif", "e.bmp", "f.tif", "g.tiff", "h.jpg"]
    ]
    explicit = [str(photos["jpeg"]), str(folder / "notes.txt"), "no/such.jpg"]  # files are kept as given
    assert find_images([explicit[0], folder, *explicit[1:]]) == [explicit[0], *expected, *explicit[1:]]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no photos here")
    with pytest.raises(ValueError, match=f"folder {empty} holds no photos"):
        find_images([empty])


# ---- models and encoders ----------------------------------------------------------------------------------------


def test_from_pretrained_loads_a_model_file(tmp_path, encoder, photos) -> None:
    model = tiny_model()
    path = model.save(tmp_path / "tiny.npz")
    for name_or_path in (path, str(path)):
        loaded = Captioner.from_pretrained(name_or_path)
        assert loaded.encoder_name == ENCODER and loaded.max_length == 6
    assert Captioner(loaded.model, encoder).caption(photos["jpeg"]) == Captioner(model, encoder).caption(photos["jpeg"])


def test_shipped_models_are_found_by_name(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("rnncap.apps.paths.ASSETS", tmp_path)
    tiny_model().save(tmp_path / f"{captioner_module.DEFAULT_MODEL}.npz")
    tiny_model().save(tmp_path / "other.npz")
    assert model_path() == model_path(captioner_module.DEFAULT_MODEL) == tmp_path / "flickr8k-coco-attention.npz"
    assert model_path("other") == tmp_path / "other.npz"
    assert Captioner.from_pretrained("other").encoder_name == ENCODER
    with pytest.raises(ModelFileError, match=r"no model file or shipped model named 'nope' \(shipped models: \['"):
        model_path("nope")


def test_a_missing_shipped_model_says_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("rnncap.apps.paths.ASSETS", tmp_path)
    with pytest.raises(ModelFileError, match="missing from this installation; pass a model file instead"):
        Captioner.from_pretrained()


def test_bad_model_files_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        Captioner.from_pretrained(tmp_path / "missing.npz")
    with pytest.raises(ModelFileError, match="does not exist"):
        Captioner.from_pretrained("models/missing")  # a directory separator makes it a path, not a name
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(ModelFileError, match="not a readable rnncap model file"):
        Captioner.from_pretrained(corrupt)
    no_encoder = tiny_model(metadata={}).save(tmp_path / "no-encoder.npz")
    with pytest.raises(ModelFileError, match=f"{no_encoder}: the model's metadata names no image encoder"):
        Captioner.from_pretrained(no_encoder)


def test_the_encoder_must_fit_the_model(encoder) -> None:
    with pytest.raises(ValueError, match="names no image encoder"):
        Captioner(tiny_model(metadata={}))
    with pytest.raises(ValueError, match="reads 512-d features, but efficientnet-lite0 gives 1280-d ones"):
        Captioner(tiny_model(input_dim=512))
    with pytest.raises(ValueError, match="reads 512-d features, but efficientnet-lite0 gives 1280-d ones"):
        Captioner(tiny_model(input_dim=512, metadata={}), encoder)
    with pytest.raises(
        ValueError,
        match="reads features of the .efficientnet-lite2. encoder, but the encoder given is .efficientnet-lite0.",
    ):
        Captioner(tiny_model(metadata={"encoder": "efficientnet-lite2"}), encoder)
    with pytest.raises(ValueError, match="cannot compute from photos: unknown encoder 'cs231n-vgg16-fc7-pca'"):
        Captioner(tiny_model(metadata={"encoder": "cs231n-vgg16-fc7-pca"}))
    with pytest.raises(ValueError, match="'max_length' must be a positive integer, got 0"):
        Captioner(tiny_model(metadata={"encoder": ENCODER, "max_length": 0}))
    assert Captioner(tiny_model(metadata={}), encoder).encoder_name == ENCODER  # an encoder given needs no metadata


def test_the_encoder_loads_on_first_use(monkeypatch, encoder, photos) -> None:
    loaded = []

    def fake_load_encoder(name, backend):
        loaded.append((name, backend))
        return encoder

    monkeypatch.setattr(captioner_module, "load_encoder", fake_load_encoder)
    captioner = Captioner(tiny_model(), backend="onnx")
    assert loaded == []
    captioner.caption(photos["jpeg"])
    captioner.caption(photos["png"])
    assert loaded == [(ENCODER, "onnx")] and captioner.encoder is encoder


# ---- attention models -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attending(encoder) -> Captioner:
    return Captioner(tiny_attention_model(), encoder)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_models_read_the_grid_and_return_every_words_weights(attending, encoder, photos, beam_size) -> None:
    model = attending.model
    path = photos["panorama"]  # 27:1: the maps lie on the centred square, not on the photo
    attended = attending.caption_with_attention(path, beam_size=beam_size)
    assert isinstance(attended, AttendedCaption) and attended.caption == attending.caption(path, beam_size=beam_size)
    assert attended.words == tuple(attended.caption.split()) and len(attended.words) == 6

    square = load_image(path, encoder.image_size)
    assert np.array_equal(attended.square, square)  # what the encoder read: 224 x 224, the panorama's middle
    _, grid = encoder.encode_preprocessed(square[None])  # (1, 49, 1280)
    if beam_size == 1:
        ids, weights = model.sample(grid, 6, return_attention=True)
    else:
        ids, weights = model.beam_search(grid, beam_size, 6, return_attention=True)
    assert attended.caption == decode_captions(ids, model.idx_to_word)[0]
    assert attended.weights.shape == (6, 7, 7)  # (T words, h, w): the grid's cells row by row
    assert np.array_equal(attended.weights, weights[0].reshape(6, 7, 7))
    np.testing.assert_allclose(attended.weights.sum(axis=(1, 2)), 1, rtol=1e-5)


@pytest.mark.parametrize("words", [["w1", "w2"], []])
def test_a_caption_that_ends_early_has_one_map_per_word(encoder, photos, monkeypatch, words) -> None:
    model = tiny_attention_model()
    ids = np.full((1, 6), model.null_id, dtype=np.int32)
    ids[0, : len(words) + 1] = [*(model.word_to_idx[w] for w in words), model.end_id]
    weights = np.random.default_rng(0).dirichlet(np.ones(49), size=(1, 6))  # (1, max_length, L)

    def greedy_search(searched, features, max_length, return_attention=False):
        assert searched is model and features.shape == (1, 49, 1280) and return_attention
        return ids, weights

    monkeypatch.setattr("rnncap.decode.greedy_search", greedy_search)
    attended = Captioner(model, encoder).caption_with_attention(photos["jpeg"], beam_size=1)
    assert attended.words == tuple(words) and attended.caption == " ".join(words)
    assert np.array_equal(attended.weights, weights[0, : len(words)].reshape(len(words), 7, 7))  # not <END>'s
    assert attended.draw(panel_size=30).width > 30  # no words: the photo alone


def test_batched_attention_equals_one_by_one(attending, photos) -> None:
    paths = [photos["jpeg"], photos["gray"], photos["png"]]
    batched = attending.caption_many_with_attention(paths, batch_size=2)
    for path, attended in zip(paths, batched, strict=True):
        alone = attending.caption_with_attention(path)
        assert attended.caption == alone.caption and attended.words == alone.words
        np.testing.assert_allclose(attended.weights, alone.weights, atol=1e-6)
        assert np.array_equal(attended.square, alone.square)
    assert [a.caption for a in batched] == attending.caption_many(paths)
    _, grid = attending.encoder.encode_preprocessed(batched[0].square[None])  # (1, 49, 1280)
    assert attending.caption_features(grid) == [batched[0].caption]  # an attention model's features are its grid


def test_caption_files_can_keep_the_attention(attending, photos, tmp_path) -> None:
    bad = make_bad_files(tmp_path, photos["jpeg"])["corrupt"]
    paths = [photos["jpeg"], bad, photos["webp"]]
    results = list(attending.caption_files(paths, attention=True, batch_size=2))
    assert [r.caption for r in results] == [attending.caption(photos["jpeg"]), None, attending.caption(photos["webp"])]
    assert results[1].attention is None and results[1].error is not None
    for result in (results[0], results[2]):
        assert result.attention.caption == result.caption and result.attention.weights.shape == (6, 7, 7)
    assert results[0].as_dict() == {"image": str(photos["jpeg"]), "caption": results[0].caption}  # JSON unchanged
    assert all(r.attention is None for r in attending.caption_files(paths))  # only when asked


def test_attended_captions_draw_their_maps(attending, photos, tmp_path) -> None:
    attended = attending.caption_with_attention(photos["jpeg"])
    picture = attended.draw(columns=3, panel_size=60)
    assert picture.width < picture.height * 2  # 6 words in 2 rows of 3
    path = attended.write(tmp_path / "maps.png", columns=3, panel_size=60)
    with Image.open(path) as written:
        assert written.size == picture.size


def test_models_that_do_not_attend_have_no_maps(captioner, attending, photos) -> None:
    assert attending.has_attention and not captioner.has_attention
    message = r"the model \(CaptioningRNN\) does not attend, so it has no attention maps"
    with pytest.raises(ValueError, match=message):
        captioner.caption_with_attention(photos["jpeg"])
    with pytest.raises(ValueError, match=message):
        next(captioner.caption_files([photos["jpeg"]], attention=True))


def test_the_grid_must_fit_the_model(encoder) -> None:
    with pytest.raises(ValueError, match="attends over 81 grid cells, but efficientnet-lite0 gives a 7 x 7 grid of 49"):
        Captioner(tiny_attention_model(num_locations=81), encoder)
    with pytest.raises(ValueError, match="attends over 81 grid cells, but efficientnet-lite0 gives a 7 x 7 grid"):
        Captioner(tiny_attention_model(num_locations=81))  # the encoder named by the metadata, not yet loaded


def test_import_rnncap_imports_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, rnncap\n"
        "from rnncap import AttentionCaptioner, CaptioningRNN, ModelFileError, decode_captions, load_model\n"
        "assert 'rnncap.apps.captioner' not in sys.modules\n"  # Captioner loads on first use
        "early = [m for m in ('PIL', 'h5py', 'torch', 'onnxruntime') if m in sys.modules]\n"
        "assert not early, early\n"
        "from rnncap import Captioner\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


# ---- caption_detailed: what the server shows ---------------------------------------------------------------------


def scored(model, features: np.ndarray, words: str, max_length: int) -> float:
    """The total log-probability of a caption (its words, then <END> if it ended before ``max_length``), step by
    step through the model."""
    tokens = [model.word_to_idx[word] for word in words.split()]
    tokens += [model.end_id] if len(tokens) < max_length else []
    state, fed, total = model.init_state(features), np.array([model.start_id], dtype=np.int32), 0.0
    for token in tokens:
        log_probs, state = model.step(state, fed)
        total += float(log_probs[0, token])
        fed = np.array([token], dtype=np.int32)
    return total


@pytest.mark.parametrize("beam_size", [1, 3])
def test_detailed_captions_are_caption_many_with_every_candidate_scored(captioner, encoder, photos, beam_size) -> None:
    images = [photos["jpeg"], photos["png"], photos["gif"]]
    detailed = captioner.caption_detailed(images, beam_size=beam_size)
    assert [d.caption for d in detailed] == captioner.caption_many(images, beam_size=beam_size)
    for path, result in zip(images, detailed, strict=True):
        assert len(result.candidates) == beam_size and result.candidates[0].caption == result.caption
        assert len({c.caption for c in result.candidates}) == beam_size  # the beam's distinct hypotheses
        logprobs = [c.logprob for c in result.candidates]
        assert logprobs == sorted(logprobs, reverse=True) and logprobs[0] < 0
        pooled, _ = encoder.encode([load_image(path, encoder.image_size)], with_grid=False)
        for candidate in result.candidates:
            assert candidate.logprob == pytest.approx(scored(captioner.model, pooled, candidate.caption, 6), abs=1e-3)
        assert result.attention is None and result.ms > 0
    assert len({d.ms for d in detailed}) == 1  # one batch, one time


def test_detailed_captions_keep_the_attention_of_the_best(attending, photos) -> None:
    images = [photos["jpeg"], photos["webp"]]
    detailed = attending.caption_detailed(images, beam_size=3, attention=True)
    for result, attended in zip(detailed, attending.caption_many_with_attention(images, beam_size=3), strict=True):
        assert result.caption == attended.caption and result.attention is not None
        assert result.attention.words == attended.words
        np.testing.assert_allclose(result.attention.weights, attended.weights, atol=1e-6)
        np.testing.assert_array_equal(result.attention.square, attended.square)
    assert attending.caption_detailed([], attention=True) == []


def test_detailed_captions_refuse_attention_from_a_model_that_does_not_attend(captioner, photos) -> None:
    with pytest.raises(ValueError, match="does not attend"):
        captioner.caption_detailed([photos["jpeg"]], attention=True)
    with pytest.raises(ValueError, match="beam_size"):
        captioner.caption_detailed([photos["jpeg"]], beam_size=0)
