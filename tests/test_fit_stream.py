"""Streamed features in a run: a split above rnncap.apps.joint.STREAM_BYTES is read batch by batch from its file,
and the run is bit for bit the one in memory (one file, several files, the attention model's grids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import make_prepared
from rnncap.apps import joint
from rnncap.apps.fit import FitResult, fit
from rnncap.data import H5Rows, open_store
from rnncap.models import AttentionConfig, ModelConfig, RNNConfig
from rnncap.train import ConcatFeatures, TrainConfig

SMALL = RNNConfig(cell_type="lstm", wordvec_dim=8, hidden_dim=16, dropout=0.1)
ATTENTION = AttentionConfig(wordvec_dim=8, hidden_dim=16, dropout=0.1, attention_dim=8, alpha_reg=0.5)
CONFIG = TrainConfig(
    num_epochs=2, batch_size=4, optim_config={"learning_rate": 5e-2}, patience=None, progress=False, plot=False
)


def _two(tmp_path: Path) -> list[Path]:
    """Two prepared files (in folders a and b), to train one model on both."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    return [make_prepared(tmp_path / "a"), make_prepared(tmp_path / "b")]


def _same_runs(streamed: FitResult, in_memory: FitResult) -> None:
    assert streamed.history["iteration_loss"] == in_memory.history["iteration_loss"]
    assert streamed.history["metrics"] == in_memory.history["metrics"]
    assert streamed.history["val_loss"] == in_memory.history["val_loss"]
    for name, value in in_memory.model.params.items():
        np.testing.assert_array_equal(streamed.model.params[name], value, err_msg=name)
    assert streamed.model.metadata["data_fingerprint"] == in_memory.model.metadata["data_fingerprint"]


def _fit_both(data, tmp_path: Path, settings: ModelConfig, monkeypatch) -> tuple[FitResult, FitResult]:
    in_memory = fit(data, tmp_path / "memory", settings, CONFIG)
    monkeypatch.setattr(joint, "STREAM_BYTES", 0)  # every split streams
    return fit(data, tmp_path / "streamed", settings, CONFIG), in_memory


@pytest.mark.parametrize("settings", [SMALL, ATTENTION], ids=["lstm", "attention"])
def test_a_streamed_split_trains_bit_for_bit_as_in_memory(tmp_path: Path, monkeypatch, settings) -> None:
    _same_runs(*_fit_both(make_prepared(tmp_path), tmp_path, settings, monkeypatch))


def test_a_joint_run_on_streamed_files_is_the_run_in_memory(tmp_path: Path, monkeypatch) -> None:
    two = _two(tmp_path)
    _same_runs(*_fit_both(two, tmp_path, SMALL, monkeypatch))


def test_read_split_streams_above_the_limit_only(tmp_path: Path, monkeypatch) -> None:
    data = make_prepared(tmp_path)
    with open_store(data) as store:
        in_memory = joint.read_split(store, "train", grid=True)
        assert isinstance(in_memory.features, np.ndarray) and in_memory.features.dtype == np.float16
        monkeypatch.setattr(joint, "STREAM_BYTES", in_memory.features.nbytes - 1)
        with joint.read_split(store, "train", grid=True) as streamed:
            assert isinstance(streamed.features, H5Rows)
            np.testing.assert_array_equal(streamed.features[:], in_memory.features)
            np.testing.assert_array_equal(streamed.captions, in_memory.captions)
            np.testing.assert_array_equal(streamed.image_idxs, in_memory.image_idxs)


def test_joined_streamed_parts_are_read_part_by_part(tmp_path: Path, monkeypatch) -> None:
    two = _two(tmp_path)
    in_memory = joint.read_joint(two, "train", "dev", grid=True, min_count=1)
    monkeypatch.setattr(joint, "STREAM_BYTES", 0)
    streamed = joint.read_joint(two, "train", "dev", grid=True, min_count=1)
    try:
        assert isinstance(streamed.train.features, ConcatFeatures)
        np.testing.assert_array_equal(
            streamed.train.features.take(np.arange(len(in_memory.train.features))), in_memory.train.features
        )
        np.testing.assert_array_equal(streamed.train.captions, in_memory.train.captions)
    finally:
        streamed.train.close()
        streamed.val.close()
