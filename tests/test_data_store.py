"""The prepared HDF5 file: create, resume, extract batch by batch, mark failures, load splits and references."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from rnncap import CaptioningRNN
from rnncap.data import (
    StoreError,
    create_store,
    load_grid,
    load_references,
    load_split,
    open_store,
    prepare_records,
    read_flickr8k,
    read_folder,
)
from rnncap.data.store import FORMAT

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the repository, never inside it
FLICKR = SHARED / "flickr8k"


def make_photos(root: Path) -> Path:
    """Five real PNG photos and one file that is not a photo, with captions in train and val."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(5):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / f"{i}.png")
        split = "val" if i >= 3 else "train"
        rows += [f"{i}.png,A red photo number {i}.,{split}", f"{i}.png,Photo {i} is red.,{split}"]
    (root / "broken.png").write_bytes(b"this is not a PNG")  # exists, so the reader accepts it
    rows.append("broken.png,A photo that cannot be read.,train")
    (root / "captions.csv").write_text("image,caption,split\n" + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def prepared_store(tmp_path: Path) -> tuple[Path, object]:
    dataset = read_folder(make_photos(tmp_path / "photos"))
    prepared = prepare_records(dataset, min_count=1, max_length=6)
    path = tmp_path / "out" / "toy.h5"
    assert create_store(path, dataset, *prepared, root=dataset.root, name=dataset.name) is True
    return path, prepared


def features_of(indices: np.ndarray, dim: int = 4) -> np.ndarray:
    """Deterministic float16-exact features: row i is i + [0, 0.25, 0.5, ...]."""
    return (np.asarray(indices)[:, None] + 0.25 * np.arange(dim)).astype(np.float32)


def extract(store, batch_size: int = 2, stop_after: int | None = None) -> None:
    """What an encoder does: read each photo, mark the unreadable ones failed, write features batch by batch."""
    todo = store.pending()
    for b, start in enumerate(range(0, len(todo), batch_size)):
        if stop_after is not None and b == stop_after:
            return  # an interruption
        batch = todo[start : start + batch_size]
        good = []
        for index, path in zip(batch, store.image_paths(batch), strict=True):
            try:
                with Image.open(path) as photo:
                    photo.convert("RGB")
                good.append(index)
            except (UnidentifiedImageError, OSError) as e:
                store.mark_failed(index, f"{type(e).__name__}: {e}")
        store.write_features(good, features_of(good))


def test_layout_and_attributes(prepared_store) -> None:
    path, prepared = prepared_store
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["max_length"] == 6 and f.attrs["encoder"] == ""
        assert f.attrs["name"] == "folder" and f.attrs["root"] == str(path.parent.parent / "photos")
        assert f["images/id"].asstr()[()].tolist() == ["0.png", "1.png", "2.png", "broken.png", "3.png", "4.png"]
        assert f["images/path"].asstr()[0] == "0.png"  # relative to the root
        assert f["images/split"].asstr()[()].tolist() == ["train"] * 4 + ["val"] * 2
        assert f["images/ok"][()].all() and not f["features/done"][()].any()
        assert f["captions/tokens"].dtype == np.int32 and f["captions/tokens"].shape == (11, 8)
        np.testing.assert_array_equal(f["captions/tokens"][()], prepared.tokens)
        np.testing.assert_array_equal(f["captions/image"][()], prepared.caption_image)
        assert f["captions/raw"].asstr()[()].tolist() == prepared.raw
    with open_store(path) as store:
        assert store.word_to_idx == prepared.word_to_idx and store.max_length == 6
        assert store.image_paths([0])[0].is_file()
        assert store.splits() == {
            "train": {"images": 4, "captions": 7, "done": 0, "failed": 0},
            "val": {"images": 2, "captions": 4, "done": 0, "failed": 0},
        }
        assert store.summary() == (
            "toy.h5: folder, 6 images (train 4, val 2), 11 captions, vocabulary "
            f"{len(prepared.word_to_idx)} words, features 0/6 done (no encoder yet), 0 unreadable"
        )


def test_interrupted_extraction_resumes_and_the_unreadable_photo_is_left_out(prepared_store) -> None:
    path, prepared = prepared_store
    with open_store(path, writable=True) as store:
        store.begin_features("toy-cnn", pooled_dim=4)
        extract(store, batch_size=2, stop_after=1)  # the first batch is written, then the run stops
    with open_store(path, writable=True) as store:
        np.testing.assert_array_equal(store.pending(), [2, 3, 4, 5])
        store.begin_features("toy-cnn", pooled_dim=4)  # same encoder: continues, keeps the first batch
        np.testing.assert_array_equal(store.pending(), [2, 3, 4, 5])
        extract(store, batch_size=3)
        assert store.pending().size == 0
        assert list(store.failures()) == ["broken.png"] and "UnidentifiedImageError" in store.failures()["broken.png"]
        assert store.splits()["train"] == {"images": 4, "captions": 7, "done": 3, "failed": 1}

    train = load_split(path, "train")
    np.testing.assert_array_equal(train.features, features_of([0, 1, 2]))  # float16 round trip, exact here
    assert train.features.dtype == np.float32
    keep = np.isin(prepared.caption_image, [0, 1, 2])
    np.testing.assert_array_equal(train.captions, prepared.tokens[keep])
    np.testing.assert_array_equal(train.image_idxs, prepared.caption_image[keep])  # rows 0..2 are photos 0..2
    val = load_split(path, "val")
    np.testing.assert_array_equal(val.features, features_of([4, 5]))
    np.testing.assert_array_equal(val.image_idxs, [0, 0, 1, 1])  # re-indexed to the split's rows
    refs = load_references(path, "val")
    assert refs == {
        "3.png": ["A red photo number 3.", "Photo 3 is red."],
        "4.png": ["A red photo number 4.", "Photo 4 is red."],
    }
    assert list(load_references(path, "train")) == ["0.png", "1.png", "2.png"]  # row order of load_split

    model = CaptioningRNN(prepared.word_to_idx, input_dim=4, wordvec_dim=8, hidden_dim=8, cell_type="lstm")
    loss, _ = model.loss(train.features[train.image_idxs], train.captions)  # what the trainer does with it
    assert np.isfinite(loss)


def test_loading_before_or_during_extraction(prepared_store) -> None:
    path, _ = prepared_store
    with pytest.raises(StoreError, match=r"toy.h5 has no features yet: extract them first"):
        load_split(path, "train")
    with pytest.raises(StoreError, match=r"toy.h5 has no split 'test' \(splits: \['train', 'val'\]\)"):
        load_split(path, "test")
    with open_store(path, writable=True) as store:
        store.begin_features("toy-cnn", pooled_dim=4)
        store.write_features([1, 0], features_of([1, 0]))  # any order
    with pytest.raises(StoreError, match=r"2 of 4 readable photos of split 'train' have no features yet; resume"):
        load_split(path, "train")
    partial = load_split(path, "train", allow_partial=True)
    np.testing.assert_array_equal(partial.features, features_of([0, 1]))
    assert set(partial.image_idxs.tolist()) == {0, 1}
    with pytest.raises(StoreError, match="split 'val' has no photo with features"):
        load_split(path, "val", allow_partial=True)


def test_rerun_continues_and_a_different_store_is_not_overwritten(prepared_store, tmp_path: Path) -> None:
    path, prepared = prepared_store
    dataset = read_folder(tmp_path / "photos")
    with open_store(path, writable=True) as store:
        store.begin_features("toy-cnn", pooled_dim=4)
        store.write_features([0], features_of([0]))
    assert create_store(path, dataset, *prepared, root=dataset.root, name=dataset.name) is False  # same data
    with open_store(path) as store:
        np.testing.assert_array_equal(store.pending(), [1, 2, 3, 4, 5])  # the features survived

    other = prepare_records(dataset, min_count=1, max_length=5)
    with pytest.raises(StoreError, match=r"toy.h5 already exists and holds other data; pass overwrite=True"):
        create_store(path, dataset, *other, root=dataset.root, name=dataset.name)
    assert create_store(path, dataset, *other, root=dataset.root, name=dataset.name, overwrite=True) is True
    with open_store(path) as store:
        assert store.max_length == 5 and store.pending().size == 6 and store.encoder == ""
    assert [p.name for p in path.parent.iterdir()] == ["toy.h5"]  # no temporary file left behind

    stranger = tmp_path / "notes.h5"
    stranger.write_text("my notes")
    with pytest.raises(StoreError, match="notes.h5 already exists and holds no rnncap prepared data"):
        create_store(stranger, dataset, *prepared)
    assert stranger.read_text() == "my notes"


def test_float16_range_and_bad_feature_writes(prepared_store) -> None:
    path, _ = prepared_store
    with open_store(path, writable=True) as store:
        with pytest.raises(StoreError, match="call begin_features"):
            store.write_features([0], features_of([0]))
        store.begin_features("toy-cnn", pooled_dim=4)
        too_big = features_of([0, 1])
        too_big[1, 2] = 70000.0
        with pytest.raises(ValueError, match=r"pooled features of 1 photo\(s\) \(e.g. \['1.png'\]\) .*float16's range"):
            store.write_features([0, 1], too_big)
        nan = features_of([2])
        nan[0, 0] = np.nan
        with pytest.raises(ValueError, match=r"\['2.png'\]\) are NaN, infinite"):
            store.write_features([2], nan)
        assert store.pending().size == 6  # nothing was marked done
        with pytest.raises(ValueError, match=r"pooled features must have shape \(2, 4\), got \(2, 3\)"):
            store.write_features([0, 1], features_of([0, 1], dim=3))
        with pytest.raises(ValueError, match="stores no grid: drop grid"):
            store.write_features([0], features_of([0]), grid=np.zeros((1, 2, 2)))
        with pytest.raises(IndexError, match=r"photo indices must be in \[0, 6\), got 0..6"):
            store.write_features([0, 6], features_of([0, 6]))
        with pytest.raises(ValueError, match="distinct"):
            store.write_features([1, 1], features_of([1, 1]))
        with pytest.raises(ValueError, match="floating point"):
            store.write_features([0], np.zeros((1, 4), dtype=np.int32))
        with pytest.raises(IndexError):
            store.mark_failed(9, "nope")
        with pytest.raises(StoreError, match=r"holds features of 'toy-cnn' .*pass restart=True"):
            store.begin_features("other-cnn", pooled_dim=8)
    with open_store(path) as store, pytest.raises(StoreError, match="open read-only"):
        store.write_features([0], features_of([0]))


def test_grid_features_and_restart(prepared_store, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = prepared_store
    monkeypatch.setattr("rnncap.data.store._BLOCK_BYTES", 8)  # read one row at a time: blocks joined correctly
    rng = np.random.default_rng(0)
    with open_store(path, writable=True) as store:
        store.begin_features("toy-cnn", pooled_dim=4)
        store.mark_failed(3, "unreadable")
        store.write_features([0], features_of([0]))
        store.begin_features("grid-cnn", pooled_dim=4, grid_shape=(9, 3), restart=True)
        assert store.encoder == "grid-cnn" and store.pending().size == 6 and not store.failures()  # all dropped
        grid = rng.standard_normal((6, 9, 3)).astype(np.float32)
        with pytest.raises(ValueError, match="stores grid features: pass grid"):
            store.write_features(np.arange(6), features_of(np.arange(6)))
        store.write_features(np.arange(6), features_of(np.arange(6)), grid=grid)
    val_grid = load_grid(path, "val")
    assert val_grid.dtype == np.float16 and val_grid.shape == (2, 9, 3)
    np.testing.assert_array_equal(val_grid, grid[4:].astype(np.float16))
    assert load_split(path, "val").features.shape == (2, 4)
    with open_store(path, writable=True) as store:
        store.begin_features("toy-cnn", pooled_dim=4, restart=True)  # back to pooled features only
        store.write_features(np.arange(6), features_of(np.arange(6)))
    with pytest.raises(StoreError, match="holds no grid features"):
        load_grid(path, "train")


def test_opening_bad_files(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"prepared file .*missing.h5 not found"):
        open_store(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(StoreError, match=r"text.h5 is not a readable HDF5 file"):
        open_store(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something-else"
    with pytest.raises(StoreError, match=r"other.h5 is not an rnncap prepared file \(format 'something-else'"):
        open_store(tmp_path / "other.h5")
    with h5py.File(tmp_path / "cut.h5", "w") as f:
        f.attrs["format"] = FORMAT
    with pytest.raises(StoreError, match=r"cut.h5 is damaged or incomplete"):
        open_store(tmp_path / "cut.h5")


def test_create_store_bad_input(tmp_path: Path) -> None:
    dataset = read_folder(make_photos(tmp_path))
    prepared = prepare_records(dataset, min_count=1)
    word_to_idx, tokens, caption_image, raw = prepared
    path = tmp_path / "x.h5"
    with pytest.raises(ValueError, match="no records"):
        create_store(path, [], *prepared)
    with pytest.raises(ValueError, match=r"image ids must be unique, repeated: \['0.png'\]"):
        create_store(path, [*dataset, dataset.records[0]], *prepared)
    with pytest.raises(ValueError, match=r"caption_image must index the 2 records, got 0..5"):
        create_store(path, dataset.records[:2], *prepared)
    with pytest.raises(ValueError, match=r"raw_captions must hold 11 captions"):
        create_store(path, dataset, word_to_idx, tokens, caption_image, raw[:-1])
    with pytest.raises(ValueError, match=r"tokens: token id \d+ is outside the vocabulary"):
        create_store(path, dataset, word_to_idx, tokens + 100, caption_image, raw)
    with pytest.raises(ValueError, match=r"<END> to id 2"):
        create_store(path, dataset, {"<NULL>": 0, "<START>": 1}, tokens, caption_image, raw)
    assert not path.exists()
    assert create_store(path, dataset, *prepared)  # no root: absolute photo paths
    with open_store(path) as store:
        assert store.root is None and store.image_paths([0]) == [tmp_path / "0.png"]
    assert create_store(path, dataset, *prepared, root=tmp_path, overwrite=True)
    with open_store(path, root="/moved") as store:  # a moved data set: the caller names the new root
        assert store.image_paths([1]) == [Path("/moved/1.png")]


@pytest.mark.skipif(not FLICKR.is_dir(), reason=f"real Flickr8k data not found at {FLICKR}")
def test_real_flickr8k_store(tmp_path: Path) -> None:
    dataset = read_flickr8k(FLICKR, splits=("train", "dev"))
    prepared = prepare_records(dataset, min_count=5, max_length=16)
    path = tmp_path / "flickr8k.h5"
    create_store(path, dataset, *prepared, root=dataset.root, name=dataset.name)
    assert 2000 < len(prepared.word_to_idx) < 4000 and prepared.tokens.shape == (35000, 18)
    with open_store(path, writable=True) as store:
        assert store.splits() == {
            "train": {"images": 6000, "captions": 30000, "done": 0, "failed": 0},
            "dev": {"images": 1000, "captions": 5000, "done": 0, "failed": 0},
        }
        assert store.image_paths([0])[0] == dataset.records[0].path and store.image_paths([0])[0].is_file()
        store.begin_features("random", pooled_dim=8)
        for batch in np.array_split(store.pending(), 10):
            store.write_features(batch, features_of(batch, dim=8) / 8000)
    train = load_split(path, "train")
    assert train.features.shape == (6000, 8) and train.captions.shape == (30000, 18)
    refs = load_references(path, "dev")
    assert len(refs) == 1000 and all(len(captions) == 5 for captions in refs.values())
    assert list(refs)[0] == dataset.records[6000].image_id
