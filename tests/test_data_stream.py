"""Features streamed from the prepared file (rnncap.data.stream, CaptionData.batches): the same batches, byte for
byte, as the in-memory split; the same training run bit for bit, resumed too; errors when the file goes away."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from rnncap import CaptioningRNN
from rnncap.data import ImageRecord, StoreError, create_store, open_store
from rnncap.data.store import load_grid, load_split, open_split
from rnncap.data.stream import H5Rows
from rnncap.decode import caption_features
from rnncap.models import AttentionCaptioner
from rnncap.train import CaptionData, TrainConfig, Trainer
from rnncap.train.data import FeatureSource

PHOTOS, DIM, CELLS = 30, 6, 4
WORDS = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3} | {f"w{i}": i for i in range(4, 12)}


def write_store(path: Path, seed: int = 0) -> Path:
    """30 photos (train 0-19 but for the unreadable photo 5, val 20-29), 1 to 3 captions each, random features
    exact in float16 and grids of 4 cells."""
    rng = np.random.default_rng(seed)
    records = [
        ImageRecord(f"p{i}", Path(f"/nowhere/p{i}.jpg"), "train" if i < 20 else "val", ("x",)) for i in range(PHOTOS)
    ]
    caption_image = np.repeat(np.arange(PHOTOS), rng.integers(1, 4, PHOTOS))
    K = len(caption_image)
    tokens = np.zeros((K, 6), dtype=np.int32)
    tokens[:, 0], tokens[:, 1:4], tokens[:, 4] = 1, rng.integers(4, len(WORDS), (K, 3)), 2
    create_store(path, records, WORDS, tokens, caption_image, ["x"] * K, name="toy")
    with open_store(path, writable=True) as store:
        store.begin_features("toy", pooled_dim=DIM, grid_shape=(CELLS, DIM))
        store.mark_failed(5, "unreadable")
        good = np.setdiff1d(np.arange(PHOTOS), [5])
        pooled = rng.standard_normal((len(good), DIM)).astype(np.float16)
        store.write_features(good, pooled, rng.standard_normal((len(good), CELLS, DIM)).astype(np.float16))
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return write_store(tmp_path / "toy.h5")


def in_memory(path: Path, split: str, grid: bool) -> CaptionData:
    data = load_split(path, split)
    return CaptionData(load_grid(path, split), data.captions, data.image_idxs) if grid else data


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_streamed_batches_are_byte_identical_to_in_memory(store_path: Path, grid: bool, prefetch: int) -> None:
    memory = in_memory(store_path, "train", grid)
    order = np.random.default_rng(7).permutation(len(memory))  # 7 does not divide K: a short last batch
    with open_split(store_path, "train", grid=grid) as streamed:
        assert streamed.streamed and not memory.streamed
        assert streamed.features.shape == memory.features.shape
        assert streamed.features.dtype == memory.features.dtype == (np.float16 if grid else np.float32)
        got = list(streamed.batches(order, 7, prefetch=prefetch))
    want = list(memory.batches(order, 7, prefetch=0))
    assert len(got) == len(want) == -(-len(order) // 7)
    for (idx, features, captions), (idx2, features2, captions2) in zip(got, want, strict=True):
        assert np.array_equal(idx, idx2) and captions.tobytes() == captions2.tobytes()
        assert features.dtype == features2.dtype and features.tobytes() == features2.tobytes()
        assert np.array_equal(features, memory.batch(idx)[0])


def test_rows_map_to_the_split_and_indexing_works_like_an_ndarray(store_path: Path) -> None:
    memory = in_memory(store_path, "val", grid=True).features
    with open_split(store_path, "val", grid=True).features as source:
        assert isinstance(source, H5Rows) and isinstance(source, FeatureSource) and len(source) == 10
        for key in (3, slice(2, 7), slice(None, None, -3), np.array([4, 4, 0, 9]), np.arange(10) % 2 == 0):
            assert np.array_equal(source[key], memory[key]), key
        assert source.take(np.array([], dtype=int)).shape == (0, CELLS, DIM)
        with pytest.raises(IndexError, match="row 10 is outside the 10 rows"):
            source.take(np.array([10]))
    with pytest.raises(StoreError, match="were closed"):
        source.take(np.array([0]))
    source.close()  # twice is harmless


def test_a_missing_split_dataset_or_row_is_refused_when_streaming(store_path: Path) -> None:
    with pytest.raises(StoreError, match="no split 'test'"):
        open_split(store_path, "test")
    with pytest.raises(IndexError, match="rows outside the 30 rows of features/pooled"):
        H5Rows(store_path, "features/pooled", np.array([PHOTOS]))
    with pytest.raises(StoreError, match="features/nothing is missing"):
        H5Rows(store_path, "features/nothing", np.array([0]))


def test_the_file_removed_replaced_or_truncated_mid_run_is_a_clear_error(tmp_path: Path, store_path: Path) -> None:
    order = np.arange(30)
    with open_split(store_path, "train", grid=True) as data:
        batches = data.batches(order, 4, prefetch=1)
        next(batches)
        with open(store_path, "r+b") as f:  # the tail of the grid gone, as after a full disk or a bad copy
            f.truncate(os.path.getsize(store_path) - 1000)
        with pytest.raises(StoreError, match=r"changed size .* truncated or rewritten"):
            list(batches)
    removed = write_store(tmp_path / "removed.h5")
    with open_split(removed, "train") as data:
        removed.unlink()
        with pytest.raises(StoreError, match="was removed or became unreadable"):
            data.batch(order[:4])
    replaced = write_store(tmp_path / "replaced.h5")
    with open_split(replaced, "train") as data:
        os.replace(write_store(tmp_path / "other.h5", seed=1), replaced)
        with pytest.raises(StoreError, match="was replaced by another file"):
            data.batch(order[:4])


def test_leaving_the_batches_early_stops_the_prefetch_thread(store_path: Path) -> None:
    with open_split(store_path, "train", grid=True) as data:
        for i, _ in enumerate(data.batches(np.arange(len(data)), 2, prefetch=2)):
            if i == 1:
                break
    assert not any(t.name == "rnncap-prefetch" for t in threading.enumerate())


def test_batches_bad_arguments(store_path: Path) -> None:
    data = load_split(store_path, "train")
    with pytest.raises(ValueError, match="order must be a 1-D array of caption indices"):
        data.batches(np.zeros((2, 2), dtype=int), 2)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        data.batches(np.arange(3), 0)
    with pytest.raises(ValueError, match="prefetch must be a non-negative integer"):
        data.batches(np.arange(3), 2, prefetch=-1)
    assert list(data.batches(np.arange(0), 2)) == []


class _Unreadable:
    """A FeatureSource whose rows cannot be read: what CaptionData may check without reading any."""

    shape, dtype, ndim = (4, 3), np.dtype(np.float16), 2

    def __len__(self) -> int:
        return 4

    def take(self, rows: np.ndarray) -> np.ndarray:
        raise AssertionError("read a row")

    def close(self) -> None:
        pass


def test_caption_data_checks_a_source_without_reading_it() -> None:
    captions, image_idxs = np.array([[1, 4, 2]]), np.array([3])
    data = CaptionData(_Unreadable(), captions, image_idxs)  # the finite check would read every row
    assert data.streamed
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        CaptionData(_Unreadable(), captions, np.array([4]))
    integers = _Unreadable()
    integers.dtype = np.dtype(np.int32)
    with pytest.raises(ValueError, match="must be floating point"):
        CaptionData(integers, captions, image_idxs)


def _config(**overrides) -> TrainConfig:
    settings = {"num_epochs": 3, "batch_size": 8, "progress": False, "plot": False, "patience": None}
    return TrainConfig(**(settings | overrides))


@pytest.mark.parametrize("grid", [False, True])
def test_training_on_a_streamed_split_is_bit_for_bit_the_in_memory_run_and_resumes(
    tmp_path: Path, store_path: Path, grid: bool
) -> None:
    def make():
        if grid:
            return AttentionCaptioner(WORDS, DIM, CELLS, 8, 8, attention_dim=8, rng=0, dropout=0.3)
        return CaptioningRNN(WORDS, DIM, 8, 8, cell_type="lstm", rng=0, dropout=0.3)

    memory_train, memory_val = in_memory(store_path, "train", grid), in_memory(store_path, "val", grid)
    whole = make()
    history = Trainer(whole, memory_train, memory_val, _config()).train()
    with open_split(store_path, "train", grid=grid) as train, open_split(store_path, "val", grid=grid) as val:
        streamed = make()
        assert without_times(Trainer(streamed, train, val, _config()).train()) == without_times(history)
        for name in whole.params:
            assert whole.params[name].tobytes() == streamed.params[name].tobytes(), name
        Trainer(make(), train, val, _config(num_epochs=1), tmp_path / "run").train()
        resumed = Trainer.resume(tmp_path / "run", train, val, config=_config())
        resumed.train()
        for name in whole.params:
            assert whole.params[name].tobytes() == resumed.model.params[name].tobytes(), name
        ids = caption_features(streamed, val.features, max_length=4, beam_size=2, batch_size=3, progress=False)
        assert ids == caption_features(whole, memory_val.features, max_length=4, beam_size=2, progress=False)


def without_times(history: dict) -> dict:
    """The history but its epoch times (wall times)."""
    return {key: value for key, value in history.items() if key != "epoch_time"}


def test_features_damaged_in_place_are_refused_by_the_batch_that_reads_them(store_path: Path) -> None:
    """Bytes overwritten without a change of size pass the file check; the model's check of each batch stops them."""
    import h5py

    with h5py.File(store_path, "r+") as f:
        f["features/grid"][3, 1, 2] = np.nan  # photo 3 of the train split: its row 3
    model = AttentionCaptioner(WORDS, DIM, CELLS, 8, 8, attention_dim=8, rng=0)
    with open_split(store_path, "train", grid=True) as data:
        rows = np.flatnonzero(data.image_idxs == 3)
        model.loss(*data.batch(np.flatnonzero(data.image_idxs == 4)))  # the other photos still train
        with pytest.raises(ValueError, match=r"NaN or infinite values \(rows \[0\]\)"):
            model.loss(*data.batch(rows))


class _Recording:
    """A FeatureSource over an ndarray that records which thread read each batch."""

    def __init__(self, features: np.ndarray) -> None:
        self.features, self.readers = features, []
        self.shape, self.dtype, self.ndim = features.shape, features.dtype, features.ndim

    def __len__(self) -> int:
        return len(self.features)

    def take(self, rows: np.ndarray) -> np.ndarray:
        self.readers.append(threading.current_thread().name)
        return self.features[rows]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("prefetch", [0, 2])
def test_prefetch_reads_in_the_background_thread(prefetch: int) -> None:
    source = _Recording(np.arange(24, dtype=np.float32).reshape(6, 4))
    data = CaptionData(source, np.tile([[1, 4, 2]], (12, 1)), np.arange(12) % 6)
    got = [features for _, features, _ in data.batches(np.arange(12)[::-1], 5, prefetch=prefetch)]
    assert [len(f) for f in got] == [5, 5, 2] and np.array_equal(got[0], source.features[[5, 4, 3, 2, 1]])
    assert source.readers == ["rnncap-prefetch" if prefetch else threading.current_thread().name] * 3


def test_concatenated_sources_read_each_part(tmp_path: Path, store_path: Path) -> None:
    from rnncap.train.data import ConcatFeatures

    other = write_store(tmp_path / "other.h5", seed=3)
    with open_split(store_path, "train", grid=True) as a, open_split(other, "val", grid=True) as b:
        joint = ConcatFeatures([a.features, b.features])
        whole = np.concatenate([in_memory(store_path, "train", True).features, in_memory(other, "val", True).features])
        rows = np.array([len(a.features), 0, len(whole) - 1, 3, len(a.features) + 2])
        assert joint.shape == whole.shape and joint.take(rows).tobytes() == whole[rows].tobytes()
        with pytest.raises(IndexError, match=r"rows must be in \[0, 29\)"):
            joint.take(np.array([29]))
        with pytest.raises(ValueError, match="part 1 holds rows of shape"):
            ConcatFeatures([a.features, in_memory(other, "val", False).features])
        joint.close()
        with pytest.raises(StoreError, match="were closed"):
            b.batch(np.arange(2))


def test_a_streamed_split_has_the_in_memory_data_fingerprint(store_path: Path) -> None:
    """So that a run begun in memory continues streamed, and back (the fingerprint samples feature rows)."""
    from rnncap.apps.continuation import data_fingerprint

    for grid in (False, True):
        with open_split(store_path, "train", grid=grid) as streamed:
            memory = in_memory(store_path, "train", grid)
            assert data_fingerprint(WORDS, "toy", {"train": streamed}, []) == data_fingerprint(
                WORDS, "toy", {"train": memory}, []
            )
