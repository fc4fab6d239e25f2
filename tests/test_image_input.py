"""CaptioningRNN's image_input: the image as the initial state (CS231n, the default) or as the cell's first input
(Show and Tell), for every cell: gradients, dropout, decoding through the contract, files, and old files.

Parity with PyTorch for both ways is in test_parity.py; what every model does is in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_vocab, model_batch, redraw_weights
from rnncap import CaptioningRNN
from rnncap.backend import to_numpy
from rnncap.decode import beam_search, greedy_search
from rnncap.gradcheck import check_model, numerical_gradient, rel_error
from rnncap.models import ModelFileError, RNNConfig, load_model
from rnncap.models.serialization import read_model_file, write_model_file
from rnncap.nn import CELLS

TOLERANCE = 1e-6
START = 1
cells = pytest.mark.parametrize("cell_type", sorted(CELLS))
image_inputs = pytest.mark.parametrize("image_input", ["init", "first_word"])


def first_word_model(
    cell_type: str, seed: int = 0, scale: float = 0.5, image_input: str = "first_word", **settings
) -> CaptioningRNN:
    """A float64 model of D=5, W=4, H=6 (W != H: a projection of the wrong width fails), by default with the image
    as first input, its weights redrawn as ``scale`` times a standard normal."""
    shape = {"input_dim": 5, "wordvec_dim": 4, "hidden_dim": 6, "dropout": 0.0} | settings
    model = CaptioningRNN(
        make_vocab(6), **shape, cell_type=cell_type, image_input=image_input, dtype=np.float64, rng=seed
    )
    redraw_weights(model, np.random.default_rng(seed), scale)
    return model


def test_the_default_is_the_initial_state():
    assert RNNConfig().image_input == "init"
    model = CaptioningRNN(make_vocab(3), input_dim=7, wordvec_dim=3, hidden_dim=5)
    assert model.image_input == "init" and model.params["W_proj"].shape == (7, 5)
    explicit = CaptioningRNN(make_vocab(3), input_dim=7, wordvec_dim=3, hidden_dim=5, image_input="init")
    assert all(np.array_equal(model.params[k], explicit.params[k]) for k in model.params)


@cells
def test_the_first_input_projects_to_a_word_vector(cell_type):
    model = first_word_model(cell_type)
    assert model.params["W_proj"].shape == (5, 4) and model.params["b_proj"].shape == (4,)
    assert model.param_shapes(model.settings, model.vocab_size) == {k: v.shape for k, v in model.params.items()}


@cells
def test_gradients_check(cell_type, rng, device):
    model = first_word_model(cell_type).to(device)
    errors = check_model(model, *model_batch(model, rng))
    assert errors.keys() == model.params.keys()
    assert max(errors.values()) < TOLERANCE, errors


@cells
def test_dropout_gradients_check_and_drop_the_image_too(cell_type, rng, device):
    model = first_word_model(cell_type, dropout=0.4).to(device)
    features, captions = model_batch(model, rng)
    loss = lambda: model.loss(features, captions, rng=np.random.default_rng(3))  # noqa: E731 (one fixed mask)
    _, grads = loss()
    for name, param in model.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda: loss()[0], param)) < TOLERANCE, name
    # Some projected-image units are dropped: their bias gets no gradient under this mask.
    b_proj = to_numpy(grads["b_proj"])
    assert (b_proj == 0).any() and (b_proj != 0).any()
    assert model.loss(features, captions)[0] != loss()[0]  # without a generator nothing is dropped


@image_inputs
@cells
def test_the_loss_is_what_decoding_step_by_step_predicts(cell_type, image_input, rng, device):
    """Teacher forcing through init_state and step gives the loss: the image step of the first input, run by
    init_state, is the one the loss runs before <START>."""
    model = first_word_model(cell_type, image_input=image_input).to(device)
    features, captions = model_batch(model, rng, n=4, t=8)
    state, total = model.init_state(features), 0.0
    for t in range(captions.shape[1] - 1):
        log_probs, state = model.step(state, captions[:, t])
        log_probs = to_numpy(log_probs)
        targets = captions[:, t + 1]
        total -= log_probs[np.arange(len(targets)), targets][targets != 0].sum()
    assert model.loss(features, captions)[0] == pytest.approx(total / len(features), rel=1e-12)


@cells
def test_init_state_has_read_the_image(cell_type, rng):
    """The state before <START> is the cell's step on the projected image from zeros, not the zero state."""
    model = first_word_model(cell_type)
    features = rng.standard_normal((3, 5))
    state = model.init_state(features)
    assert len(state) == (2 if cell_type == "lstm" else 1) and all(s.shape == (3, 6) for s in state)
    assert all(np.abs(s).min() > 0 for s in state)
    moved = model.init_state(features + 1.0)
    assert not np.allclose(state[0], moved[0])


@cells
def test_a_beam_of_one_is_greedy_search(cell_type, device):
    model = first_word_model(cell_type, seed=1, scale=1.5).to(device)
    features = np.random.default_rng(2).standard_normal((5, 5))
    greedy = greedy_search(model, features, 8)
    np.testing.assert_array_equal(beam_search(model, features, 1, 8), greedy)
    np.testing.assert_array_equal(model.sample(features, 8), greedy)
    together = model.beam_search(features, 3, 8)
    for n in range(len(features)):  # images decode apart, the image step included
        np.testing.assert_array_equal(model.beam_search(features[n : n + 1], 3, 8), together[n : n + 1])


@cells
def test_save_load_round_trip(cell_type, rng, tmp_path):
    model = first_word_model(cell_type, dropout=0.3)
    path = model.save(tmp_path / "m.npz")
    assert read_model_file(path).config["image_input"] == "first_word"
    features, captions = model_batch(model, rng)
    for loaded in (CaptioningRNN.load(path), load_model(path)):
        assert loaded.image_input == "first_word" and loaded.config() == model.config()
        assert loaded.loss(features, captions)[0] == model.loss(features, captions)[0]
        np.testing.assert_array_equal(loaded.beam_search(features, 2, 6), model.beam_search(features, 2, 6))


def test_a_file_without_the_setting_loads_as_the_initial_state(rng, tmp_path):
    """Files written before image_input existed (the shipped models' format) caption as they always did."""
    model = first_word_model("lstm", image_input="init")
    config = {key: value for key, value in model.config().items() if key != "image_input"}
    path = write_model_file(tmp_path / "old.npz", config, model.word_to_idx, model.params)
    loaded = load_model(path)
    assert loaded.image_input == "init"
    features = rng.standard_normal((4, 5))
    np.testing.assert_array_equal(loaded.beam_search(features, 3, 8), model.beam_search(features, 3, 8))
    np.testing.assert_array_equal(loaded.sample(features, 8), model.sample(features, 8))


def test_an_unknown_image_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"image_input must be one of \['init', 'first_word'\], got 'first'"):
        RNNConfig(image_input="first")
    with pytest.raises(ValueError, match="image_input must be one of"):
        CaptioningRNN(make_vocab(3), input_dim=4, image_input=None)
    model = first_word_model("gru")
    path = write_model_file(
        tmp_path / "bad.npz", model.config() | {"image_input": "side"}, model.word_to_idx, model.params
    )
    with pytest.raises(ModelFileError, match="image_input must be one of"):
        load_model(path)


def test_weights_of_the_other_image_input_are_refused(tmp_path):
    """A file whose W_proj has the initial state's width (H) but says first_word is refused by shape."""
    model = first_word_model("lstm", image_input="init")
    config = model.config() | {"image_input": "first_word"}
    path = write_model_file(tmp_path / "mixed.npz", config, model.word_to_idx, model.params)
    with pytest.raises(ModelFileError, match="W_proj"):
        load_model(path)
