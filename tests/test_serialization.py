"""Model files: float16 weights, atomic writes, and refusal of corrupt, truncated, crafted or mismatched files (the
round trip of every model class is in test_contract.py)."""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from helpers import make_vocab
from rnncap import CaptioningRNN, ModelFileError
from rnncap.models import AttentionCaptioner, AttentionConfig, RNNConfig, build_model, load_model


@pytest.fixture
def model():
    return CaptioningRNN(make_vocab(8), input_dim=6, wordvec_dim=5, hidden_dim=4, cell_type="lstm", rng=1)


def test_float16_weights_halve_the_file_and_load_as_float32(model, tmp_path):
    full = model.save(tmp_path / "full.npz")
    half = model.save(tmp_path / "half.npz", weights_dtype=np.float16)
    loaded = CaptioningRNN.load(half)
    assert loaded.params["Wx"].dtype == np.float32
    np.testing.assert_allclose(loaded.params["Wx"], model.params["Wx"], rtol=1e-3, atol=1e-4)
    assert half.stat().st_size < full.stat().st_size
    assert CaptioningRNN.load(full, dtype=np.float64).params["Wx"].dtype == np.float64


def test_file_without_metadata_loads_with_empty_metadata(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "__meta__"}
    np.savez(path, **arrays)
    assert CaptioningRNN.load(path).metadata == {}


def test_load_model_refuses_an_unknown_model_class(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["__config__"] = np.array(json.dumps(model.config() | {"model": "Transformer"}))
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="'Transformer' model"):
        load_model(path)


def test_save_is_atomic_and_overwrites(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    model.params["b"] += 1
    model.save(path)
    np.testing.assert_array_equal(CaptioningRNN.load(path).params["b"], model.params["b"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary files left behind


def test_saved_file_has_the_usual_permissions(model, tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = model.save(tmp_path / "m.npz")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        CaptioningRNN.load(tmp_path / "nope.npz")


def test_truncated_file(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        CaptioningRNN.load(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelFileError, match=str(path.name)):
        CaptioningRNN.load(path)


def test_pickled_payload_is_never_unpickled(model, tmp_path):
    """A crafted file whose array is a pickle (which could run code) is refused, not loaded."""
    path = model.save(tmp_path / "m.npz")
    arrays = dict(np.load(path))
    arrays["param/Wx"] = np.array([{"evil": "payload"}], dtype=object)
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with pytest.raises(ModelFileError, match="corrupt or truncated|pickle"):
        CaptioningRNN.load(path)


def _rewrite(path, **changes):
    arrays = dict(np.load(path))
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


def test_wrong_shape_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, **{"param/Wh": np.zeros((4, 4), dtype=np.float32)})
    with pytest.raises(ModelFileError, match=r"Wh has shape \(4, 4\), the configuration expects \(4, 16\)"):
        CaptioningRNN.load(path)


def test_missing_parameter_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, **{"param/b_vocab": None})
    with pytest.raises(ModelFileError, match=r"missing \['b_vocab'\]"):
        CaptioningRNN.load(path)


def test_non_finite_weights_are_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    weights = model.params["W_vocab"].copy()
    weights[0, 0] = np.nan
    _rewrite(path, **{"param/W_vocab": weights})  # crafted: save itself refuses NaN (test_save_refuses_...)
    with pytest.raises(ModelFileError, match="W_vocab holds NaN"):
        CaptioningRNN.load(path)


def test_vocabulary_size_mismatch_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, __vocab__=np.array(json.dumps(make_vocab(3))))
    with pytest.raises(ModelFileError, match="W_embed has shape"):
        CaptioningRNN.load(path)


def test_foreign_npz_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, W=np.zeros(3))
    with pytest.raises(ModelFileError, match="not an rnncap model file"):
        CaptioningRNN.load(path)


def test_bad_config_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, __config__=np.array("{not json"))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        CaptioningRNN.load(path)
    config = {**model.config(), "cell_type": "transformer"}
    _rewrite(path, __config__=np.array(json.dumps(config)))
    with pytest.raises(ModelFileError, match="does not describe a CaptioningRNN"):
        CaptioningRNN.load(path)


def test_other_model_type_is_refused(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, __config__=np.array(json.dumps({**model.config(), "model": "AttentionCaptioner"})))
    with pytest.raises(ModelFileError, match="holds a 'AttentionCaptioner' model"):
        CaptioningRNN.load(path)


def test_file_is_a_plain_zip_of_npy(model, tmp_path):
    path = model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"__format__.npy", "__config__.npy", "__vocab__.npy", "param/Wx.npy"} <= names


# ---------------------------------------------------------------------- files the loader would refuse are never written


def test_save_refuses_non_finite_weights_and_leaves_no_file(model, tmp_path):
    good = model.save(tmp_path / "m.npz")
    before = good.read_bytes()
    model.params["W_vocab"][0, 0] = np.inf
    with pytest.raises(ModelFileError, match=r"refusing to write .*m\.npz: parameter W_vocab holds 1 NaN or infinite"):
        model.save(tmp_path / "m.npz")
    with pytest.raises(ModelFileError, match="W_vocab holds 1 NaN"):
        model.save(tmp_path / "new.npz", weights_dtype=np.float16)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"] and good.read_bytes() == before  # old file untouched


def test_float16_export_refuses_weights_past_its_range(model, tmp_path):
    model.params["Wh"][1, 2] = 1e6  # finite in float32, infinite once cast to float16
    with pytest.raises(ModelFileError, match=r"parameter Wh reaches 1e\+06, past the largest float16 value 65504"):
        model.save(tmp_path / "half.npz", weights_dtype=np.float16)
    assert list(tmp_path.iterdir()) == []
    assert CaptioningRNN.load(model.save(tmp_path / "full.npz")).params["Wh"][1, 2] == 1e6  # float32 holds it


# ---------------------------------------------------------------------- crafted sizes are refused before building


@pytest.mark.parametrize("hidden_dim", [10**9, 8000])
def test_crafted_sizes_are_refused_before_anything_is_built(model, tmp_path, hidden_dim):
    """A config naming a huge hidden size is refused from the stored shapes at once, not after allocating it."""
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, __config__=np.array(json.dumps({**model.config(), "hidden_dim": hidden_dim})))
    start = time.perf_counter()
    with pytest.raises(
        ModelFileError, match=rf"W_proj has shape \(6, 4\), the configuration expects \(6, {hidden_dim}\)"
    ):
        load_model(path)
    assert time.perf_counter() - start < 0.5


def test_crafted_sizes_of_an_attention_model_are_refused_before_building(tmp_path):
    model = AttentionCaptioner(
        make_vocab(5), input_dim=6, num_locations=4, wordvec_dim=3, hidden_dim=4, attention_dim=5
    )
    path = model.save(tmp_path / "m.npz")
    _rewrite(path, __config__=np.array(json.dumps({**model.config(), "attention_dim": 10**9})))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"W_feat has shape \(6, 5\), the configuration expects \(6, 1000000000\)"):
        AttentionCaptioner.load(path)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    "settings", [RNNConfig(5, 4, 6, cell) for cell in ("rnn", "lstm", "gru")] + [AttentionConfig(5, 3, 4, 6, 7)]
)
def test_param_shapes_are_the_shapes_a_model_builds(settings):
    model = build_model(settings, make_vocab(7))
    assert type(model).param_shapes(settings, model.vocab_size) == {
        name: value.shape for name, value in model.params.items()
    }
