"""Builders the test modules share: vocabularies, captions, photos, prepared files and small models.

Plain functions and constants (fixtures live in conftest.py), imported as ``from helpers import ...``: pytest puts
tests/ on the path, and no test module imports another.

Pillow, h5py and rnncap.data are imported inside the builders that need them, so that the tests of the engine
neither load them nor stop collecting when the data layer is broken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rnncap import CaptioningRNN
from rnncap.models import AttentionCaptioner, CaptionModel

TOY_ENCODER = "toy-cnn"  # the encoder prepared files of random features say they come from
# The small real encoder: 224 px and 1280-d like the default one, and a grid rnncap knows (7 x 7 cells over
# 224 x 224 squares).
GRID_ENCODER = "efficientnet-lite0"
DIM = 8  # feature size of the toy prepared files
LOCATIONS = 4  # grid cells per photo of the toy prepared files, for attention models


# ---- vocabularies and captions -----------------------------------------------------------------------------------


def make_vocab(num_words: int) -> dict[str, int]:
    """The four special tokens followed by ``num_words`` plain words."""
    words = ["<NULL>", "<START>", "<END>", "<UNK>"] + [f"w{i}" for i in range(num_words)]
    return {word: idx for idx, word in enumerate(words)}


def make_captions(rng: np.random.Generator, n: int, t: int, vocab_size: int) -> np.ndarray:
    """(n, t) int32 captions ``<START> words <END> <NULL>...`` of random lengths (at least one word)."""
    captions = np.zeros((n, t), dtype=np.int32)
    captions[:, 0] = 1
    lengths = rng.integers(1, t - 1, size=n)  # words per caption; <END> follows them
    for i, length in enumerate(lengths):  # building fixtures, not a hot path
        captions[i, 1 : 1 + length] = rng.integers(4, vocab_size, size=length)
        captions[i, 1 + length] = 2
    return captions


def assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float, name: str) -> None:
    """Elementwise within ``rtol``, with an absolute floor of ``rtol`` times the largest entry (entries that
    cancel to ~0 cannot keep a relative accuracy)."""
    scale = max(np.abs(theirs).max(), 1e-30)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * scale, err_msg=f"gradient of {name}")


def parity_captions(rng: np.random.Generator, T: int, vocab_size: int) -> np.ndarray:
    """(7, T + 1) int32 captions ``<START> words <END> <NULL>...`` of 0, 1, 3, 4, 6, T - 1 and T words (T - 1 words
    fill the row exactly with ``<END>``; T words are cut off without it), words drawn from ids [3, vocab_size)."""
    captions = np.full((7, T + 1), 0, dtype=np.int32)
    captions[:, 0] = 1
    for row, n in enumerate([0, 1, 3, 4, 6, T - 1, T]):
        captions[row, 1 : 1 + n] = rng.integers(3, vocab_size, size=n)
        if n < T:
            captions[row, 1 + n] = 2
    return captions


def assert_same_loss_and_gradients(
    model: CaptionModel,
    ours: tuple[float, dict[str, np.ndarray]],
    theirs: tuple[float, dict[str, np.ndarray]],
    loss_rtol: float,
    grad_rtol: float,
) -> None:
    """Our ``(loss, grads)`` against a twin's: the loss within ``loss_rtol``; a gradient for every parameter, of its
    shape and dtype, not too small to compare, within ``grad_rtol`` (:func:`assert_close`)."""
    (loss, grads), (twin_loss, twin_grads) = ours, theirs
    assert loss == pytest.approx(twin_loss, rel=loss_rtol)
    assert grads.keys() == twin_grads.keys() == model.params.keys()
    for name, param in model.params.items():
        assert grads[name].shape == param.shape and grads[name].dtype == param.dtype, name
        assert np.abs(twin_grads[name]).max() > 1e-3, f"{name}: gradient too small to compare"
        assert_close(grads[name], twin_grads[name], grad_rtol, name)


# ---- small float64 models, for gradient checks and decoding -------------------------------------------------------

KINDS = ("rnn", "lstm", "gru", "attention")  # a CaptioningRNN of each cell, and the AttentionCaptioner


def small_model(
    kind: str,
    rng: np.random.Generator,
    dtype: type = np.float64,
    scale: float = 0.5,
    words: int = 6,
    **settings: Any,
) -> CaptionModel:
    """A small model of one of ``KINDS`` over ``make_vocab(words)``: a CaptioningRNN of D=5 pooled features, or an
    AttentionCaptioner of an L=4 grid of D=5 features (alpha_reg 0.7), no dropout unless ``settings`` say so.

    Its weights are redrawn (:func:`redraw_weights`) as ``scale`` times a standard normal: of order one, so that no
    gradient entry is so small that rounding noise dominates its check (``scale=1.5``: next-word distributions far
    from ties).
    """
    if kind == "attention":
        shape = {"input_dim": 5, "num_locations": 4, "wordvec_dim": 3, "hidden_dim": 6, "attention_dim": 7}
        shape.update(alpha_reg=0.7, dropout=0.0)
        model: CaptionModel = AttentionCaptioner(make_vocab(words), **{**shape, **settings}, dtype=dtype, rng=rng)
    else:
        shape = {"input_dim": 5, "wordvec_dim": 4, "hidden_dim": 6, "cell_type": kind, "dropout": 0.0}
        model = CaptioningRNN(make_vocab(words), **{**shape, **settings}, dtype=dtype, rng=rng)
    redraw_weights(model, rng, scale)
    return model


def redraw_weights(model: CaptionModel, rng: np.random.Generator, scale: float) -> None:
    """Every parameter redrawn as ``scale`` times a standard normal, in the model's dtype: no zero biases and no
    tiny embeddings, so that every gradient is of order one and relative errors mean something."""
    for name, value in model.params.items():
        model.params[name] = (rng.standard_normal(value.shape) * scale).astype(model.dtype)


def peaked_model(kind: str, seed: int = 0, words: int = 4) -> tuple[CaptionModel, np.ndarray]:
    """A :func:`small_model` with large weights (next-word distributions far from ties, attention far from uniform)
    and the features of 5 images for it."""
    rng = np.random.default_rng(seed)
    model = small_model(kind, rng, scale=1.5, words=words)
    return model, rng.standard_normal((5, *model.feature_shape))


def model_batch(model: CaptionModel, rng: np.random.Generator, n: int = 3, t: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(n, *feature_shape) random features and (n, t) captions for ``model``."""
    return rng.standard_normal((n, *model.feature_shape)), make_captions(rng, n, t, model.vocab_size)


# ---- models for the real encoder ---------------------------------------------------------------------------------


def tiny_model(input_dim: int = 1280, metadata: dict | None = None) -> CaptioningRNN:
    """A random LSTM captioner that never ends a caption early, so every caption has max_length words."""
    model = CaptioningRNN(make_vocab(30), input_dim=input_dim, wordvec_dim=16, hidden_dim=32, cell_type="lstm")
    model.params["b_vocab"][model.end_id] = -1e3
    model.metadata = {"encoder": GRID_ENCODER, "max_length": 6} if metadata is None else metadata
    return model


def tiny_attention_model(num_locations: int = 49, metadata: dict | None = None) -> AttentionCaptioner:
    """A random attention captioner over efficientnet-lite0's 7 x 7 grid that never ends a caption early."""
    model = AttentionCaptioner(
        make_vocab(30), input_dim=1280, num_locations=num_locations, wordvec_dim=16, hidden_dim=32, attention_dim=16
    )
    model.params["b_vocab"][model.end_id] = -1e3
    model.metadata = {"encoder": GRID_ENCODER, "max_length": 6} if metadata is None else metadata
    return model


# ---- photo folders -----------------------------------------------------------------------------------------------


def make_photos(root: Path) -> dict[str, Path]:
    """Readable photos in every format and mode a user may have, by a short name."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def pixels(width: int, height: int, channels: int = 3) -> np.ndarray:
        # Smooth colour gradients plus noise: photo-like enough for JPEG, and each photo different.
        y, x = np.mgrid[0:height, 0:width]
        base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], axis=-1)
        noisy = base[:, :, :channels] + rng.integers(0, 60, size=(height, width, channels))
        return np.clip(noisy, 0, 255).astype(np.uint8).squeeze()

    photos = {
        "jpeg": (Image.fromarray(pixels(320, 240)), "photo.jpg", {"quality": 90}),
        "png": (Image.fromarray(pixels(200, 300)), "photo.png", {}),
        "webp": (Image.fromarray(pixels(256, 256)), "photo.webp", {}),
        "gif": (Image.fromarray(pixels(150, 120)).convert("P"), "photo.gif", {}),
        "gray": (Image.fromarray(pixels(180, 180, 1), mode="L"), "gray.jpg", {}),
        "cmyk": (Image.fromarray(pixels(240, 200)).convert("CMYK"), "cmyk.jpg", {}),
        "rgba": (Image.fromarray(pixels(100, 100, 3)).convert("RGBA"), "alpha.png", {}),
        "bmp": (Image.fromarray(pixels(64, 48)), "photo.bmp", {}),
        "tiff": (Image.fromarray(pixels(90, 60)), "photo.tiff", {}),
        "gray16": (Image.fromarray(pixels(120, 90, 1).astype(np.uint16) * 257), "gray16.png", {}),  # mode I;16
        "large": (Image.fromarray(pixels(240, 180)).resize((2400, 1800)), "large.jpg", {}),  # decoded at 1/4 scale
        "panorama": (Image.fromarray(pixels(4000, 150)), "panorama.JPG", {}),  # 27:1, upper-case extension
    }
    paths = {}
    for name, (image, filename, options) in photos.items():
        image.save(root / filename, **options)
        paths[name] = root / filename
    return paths


def make_bad_files(root: Path, good: Path) -> dict[str, Path]:
    """Files a folder of photos may also hold that are no readable photos."""
    root.mkdir(parents=True, exist_ok=True)
    truncated = root / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    corrupt = root / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    text = root / "notes.png"
    text.write_text("a text file with a photo's name\n")
    return {"truncated": truncated, "corrupt": corrupt, "text": text, "missing": root / "no-such-photo.jpg"}


# ---- prepared files and models over them -------------------------------------------------------------------------

CAPTIONS = [
    "A dog runs on the grass.",
    "A black dog is running.",
    "Two children play in the water.",
    "A man rides a bike down the street.",
    "A girl in a red dress smiles.",
    "A brown dog jumps over a log.",
    "People walk along the beach.",
]


def make_prepared(tmp_path: Path, encoder: str = TOY_ENCODER, locations: int = LOCATIONS) -> Path:
    """A prepared file with 3 train and 4 dev photos (one dev photo missing from disk), random features and grids
    of ``locations`` cells, said to come from ``encoder``."""
    from PIL import Image

    from rnncap.data import ImageRecord, create_store, open_store, prepare_records

    photos = tmp_path / "photos"
    photos.mkdir()
    records = []
    for i, caption in enumerate(CAPTIONS):
        path = photos / f"p{i}.png"
        if i != 6:  # p6.png never existed: the gallery must cope
            Image.new("RGB", (40 + 10 * i, 30), (30 * i, 100, 200)).save(path)
        split = "train" if i < 3 else "dev"
        records.append(ImageRecord(f"p{i}.png", path, split, (caption, CAPTIONS[(i + 1) % len(CAPTIONS)])))
    prepared = prepare_records(records, min_count=1, max_length=6)
    out = tmp_path / "toy.h5"
    create_store(out, records, *prepared, root=photos, name="toy")
    with open_store(out, writable=True) as store:
        store.begin_features(encoder, pooled_dim=DIM, grid_shape=(locations, DIM))
        rng = np.random.default_rng(0)
        M = len(records)
        store.write_features(np.arange(M), rng.standard_normal((M, DIM)), rng.standard_normal((M, locations, DIM)))
    return out


def make_model(data: Path, encoder: str = TOY_ENCODER, input_dim: int = DIM) -> CaptioningRNN:
    """A small LSTM with random weights over the file's vocabulary, recording the encoder of its features."""
    from rnncap.data import open_store

    with open_store(data) as store:
        word_to_idx = store.word_to_idx
    model = CaptioningRNN(word_to_idx, input_dim=input_dim, wordvec_dim=8, hidden_dim=16, cell_type="lstm", rng=1)
    model.metadata = {"encoder": encoder}
    return model


def make_attention_model(data: Path, encoder: str = GRID_ENCODER, locations: int = 49) -> AttentionCaptioner:
    """A small attention captioner with random weights over the file's vocabulary and grid."""
    from rnncap.data import open_store

    with open_store(data) as store:
        word_to_idx = store.word_to_idx
    model = AttentionCaptioner(
        word_to_idx, input_dim=DIM, num_locations=locations, wordvec_dim=8, hidden_dim=16, attention_dim=8, rng=1
    )
    model.metadata = {"encoder": encoder}
    return model


# ---- CS231n ------------------------------------------------------------------------------------------------------


def make_cs231n(root: Path, vocab_file: Path, sizes: dict[str, tuple[int, int]], urls: bool = True) -> Path:
    """CS231n's coco_captioning layout at small sizes: sizes[split] = (M photos, K captions)."""
    import h5py

    root.mkdir(parents=True, exist_ok=True)
    (root / "coco2014_vocab.json").write_text(vocab_file.read_text())
    V = len(json.loads(vocab_file.read_text())["idx_to_word"])
    rng = np.random.default_rng(1)
    with h5py.File(root / "coco2014_captions.h5", "w") as f:
        for split, (M, K) in sizes.items():
            captions = rng.integers(4, V, size=(K, 17)).astype(np.int32)
            captions[:, 0], captions[:, 12], captions[:, 13:] = 1, 2, 0
            f.create_dataset(f"{split}_captions", data=captions)
            f.create_dataset(f"{split}_image_idxs", data=rng.integers(0, M, size=K).astype(np.int32))
    for split, (M, _) in sizes.items():
        for suffix, D in (("", 4096), ("_pca", 512)):
            with h5py.File(root / f"{split}2014_vgg16_fc7{suffix}.h5", "w") as f:
                f.create_dataset("features", data=rng.standard_normal((M, D)).astype(np.float32))
        if urls:
            lines = "".join(
                f"http://images.cocodataset.org/{split}2014/COCO_{split}2014_{i:012d}.jpg\n" for i in range(M)
            )
            (root / f"{split}2014_urls.txt").write_text(lines)
    return root


# ---- devices -----------------------------------------------------------------------------------------------------


def on(device: str, arrays: Any) -> list[Any]:
    """Each of ``arrays`` on ``device`` (the ``device`` fixture's), None and non-arrays as they are: a layer's inputs
    where a test computes."""
    from rnncap.backend import is_array, to_device

    return [to_device(a, device) if is_array(a) else a for a in arrays]
