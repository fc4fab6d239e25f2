"""The model contract (rnncap.models.base.CaptionModel), checked on every model class of rnncap.models.MODELS: a
CaptioningRNN of each cell and the AttentionCaptioner.

What each declares (feature_shape, reads_grid, attends) fits what it reads; the loss and its gradients (float64,
rnncap.gradcheck), padding and dropout; seeded initialisation, config() and model files; decoding through
init_state / step / select_state (beam of one = greedy, images decoded apart, beams at least as likely as greedy),
attention weights returned exactly when the model attends; clear errors for bad features, captions and settings.
What only one model does is tested in test_model.py and test_attention_model.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict

import numpy as np
import pytest

from helpers import KINDS, make_vocab, model_batch, on, peaked_model, small_model
from rnncap.backend import device_of, to_numpy
from rnncap.decode import beam_search, greedy_search
from rnncap.gradcheck import check_model, numerical_gradient, rel_error
from rnncap.models import MODELS, ModelFileError, build_model, load_model
from rnncap.nn import CELLS

MODEL_TOLERANCE = 1e-6
NULL, START, END = 0, 1, 2

kinds = pytest.mark.parametrize("kind", KINDS)


def test_every_model_class_and_cell_is_covered(rng) -> None:
    assert {type(small_model(kind, rng)) for kind in KINDS} == set(MODELS.values())
    assert {kind for kind in KINDS if kind != "attention"} == set(CELLS)
    assert all(model_class.__name__ == name for name, model_class in MODELS.items())


# ---- what a model declares --------------------------------------------------------------------------------------


@kinds
def test_the_declared_feature_shape_is_what_init_state_and_step_read(kind, rng, device) -> None:
    model = small_model(kind, rng).to(device)
    shape = model.feature_shape
    assert isinstance(shape, tuple) and len(shape) in (1, 2) and shape[-1] == model.input_dim
    assert model.reads_grid == (len(shape) == 2) and isinstance(model.attends, bool)
    assert model.reads_grid == model.attends == (kind == "attention")  # today's models: only attention reads a grid
    if model.reads_grid:
        assert shape[0] == model.num_locations
    assert model.input_shape_label.endswith(f"(N, {', '.join(map(str, shape))})")

    state = model.init_state(rng.standard_normal((3, *shape)))
    assert isinstance(state, tuple) and all(s.shape[0] == 3 and device_of(s) == device for s in state)
    log_probs, next_state = model.step(state, np.full(3, START, dtype=np.int32))
    assert log_probs.shape == (3, model.vocab_size)
    np.testing.assert_allclose(np.exp(to_numpy(log_probs)).sum(axis=1), 1.0, rtol=1e-12)
    assert [s.shape for s in next_state] == [s.shape for s in state]
    other_rank = (3, shape[-1]) if model.reads_grid else (3, 2, shape[-1])  # pooled for a grid model, and back
    for features in (np.zeros((3, *shape[:-1], shape[-1] + 1)), np.zeros(other_rank)):
        with pytest.raises(ValueError, match=re.escape(f"features must have shape {model.input_shape_label}")):
            model.init_state(features)


@kinds
def test_attention_weights_are_returned_exactly_when_the_model_attends(kind, rng) -> None:
    model, features = peaked_model(kind)
    if model.attends:
        _, state = model.step(model.init_state(features), np.full(len(features), START, dtype=np.int32))
        weights = model.attention_weights(state)
        assert weights.shape == (len(features), model.num_locations)
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-12)
        for captions, attention in (
            model.sample(features, 6, return_attention=True),
            model.beam_search(features, 2, 6, return_attention=True),
        ):
            assert attention.shape == (*captions.shape, model.num_locations)
        return
    name = type(model).__name__
    with pytest.raises(ValueError, match=f"{name} has no attention weights"):
        greedy_search(model, features, 3, return_attention=True)
    with pytest.raises(ValueError, match="no attention weights"):
        beam_search(model, features, 2, 3, return_attention=True)
    with pytest.raises(ValueError, match=f"{name} has no attention weights"):
        model.sample(features, 3, return_attention=True)


# ---- the loss ---------------------------------------------------------------------------------------------------


@kinds
def test_gradients_check(kind, rng, device) -> None:
    """Every parameter's gradient against a numeric one (the attention's, its gate's and initial states' included,
    with the doubly stochastic regulariser), float64 on each device."""
    model = small_model(kind, rng).to(device)
    errors = check_model(model, *model_batch(model, rng))
    assert errors.keys() == model.params.keys()
    assert max(errors.values()) < MODEL_TOLERANCE, errors


@kinds
@pytest.mark.parametrize("feature_dtype", [np.float64, np.float16])
def test_float32_model_has_float32_gradients(kind, feature_dtype, rng, device) -> None:
    """float64 features are cast, not the model upcast; the store's float16 features are cast too."""
    model = small_model(kind, rng, dtype=np.float32).to(device)
    features, captions = model_batch(model, rng)
    loss, grads = model.loss(features.astype(feature_dtype), captions)
    assert isinstance(loss, float)
    assert all(grads[name].dtype == np.float32 and grads[name].shape == p.shape for name, p in model.params.items())
    assert all(device_of(grad) == device for grad in grads.values())


@kinds
def test_forward_only_loss_equals_full_loss(kind, rng) -> None:
    model = small_model(kind, rng)
    features, captions = model_batch(model, rng, n=4, t=9)
    loss, grads = model.loss(features, captions, compute_grads=False)
    assert grads == {}
    assert loss == model.loss(features, captions)[0]


@kinds
def test_padding_does_not_change_the_loss(kind, rng, device) -> None:
    """Extra <NULL> columns are ignored: the loss and gradients stay the same."""
    model = small_model(kind, rng).to(device)
    features, captions = model_batch(model, rng)
    padded = np.concatenate([captions, np.zeros((3, 4), dtype=captions.dtype)], axis=1)
    loss, grads = model.loss(features, captions)
    loss_padded, grads_padded = model.loss(features, padded)
    assert loss == pytest.approx(loss_padded, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(to_numpy(grads[name]), to_numpy(grads_padded[name]), rtol=1e-10, atol=1e-12)


@kinds
def test_an_all_padding_batch_has_no_gradient(kind, rng, device) -> None:
    """Empty captions (all targets <NULL>) contribute no cross-entropy and no gradient, without crashing; an
    attention model's regulariser is then the constant alpha_reg * L per caption (no step attends)."""
    model = small_model(kind, rng).to(device)
    captions = np.zeros((2, 6), dtype=np.int32)
    captions[:, 0] = START
    loss, grads = model.loss(rng.standard_normal((2, *model.feature_shape)), captions)
    assert loss == pytest.approx(model.alpha_reg * model.num_locations if model.attends else 0.0)
    assert all(not g.any() for g in grads.values())


@kinds
def test_dropout_gradients_and_modes(kind, rng, tmp_path, device) -> None:
    model = small_model(kind, rng, dropout=0.4).to(device)
    features, captions = model_batch(model, rng)
    loss = lambda: model.loss(features, captions, rng=np.random.default_rng(3))  # noqa: E731 (one fixed mask)
    _, grads = loss()
    for name, param in model.params.items():
        assert rel_error(grads[name], numerical_gradient(lambda: loss()[0], param)) < MODEL_TOLERANCE, name
    # Without a generator (validation, decoding) nothing is dropped; with one, the loss changes.
    model.dropout = 0.0
    plain = model.loss(features, captions)[0]
    model.dropout = 0.4
    assert model.loss(features, captions)[0] == plain
    assert loss()[0] != plain
    assert type(model).load(model.save(tmp_path / "m.npz")).dropout == 0.4


# ---- construction, config and files -----------------------------------------------------------------------------


@kinds
def test_initialisation_is_seeded(kind, rng) -> None:
    model = small_model(kind, rng)
    build = lambda seed: type(model)(model.word_to_idx, **asdict(model.settings), rng=seed)  # noqa: E731
    a, b, c = build(7), build(7), build(8)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert not np.array_equal(a.params["Wx"], c.params["Wx"])


@kinds
def test_config_round_trips_into_the_constructor(kind, rng) -> None:
    model = small_model(kind, rng)
    config = model.config()
    assert json.loads(json.dumps(config)) == config
    assert config["model"] == type(model).__name__ and config["dtype"] == "float64"
    assert isinstance(model.settings, model.settings_class) and asdict(model.settings).items() <= config.items()
    rebuilt = MODELS[config["model"]](model.word_to_idx, **{k: v for k, v in config.items() if k != "model"})
    built = build_model(model.settings, model.word_to_idx, dtype=model.dtype)
    for other in (rebuilt, built):
        assert type(other) is type(model) and other.config() == config
        assert {k: v.shape for k, v in other.params.items()} == {k: v.shape for k, v in model.params.items()}


@kinds
def test_save_load_round_trip(kind, rng, tmp_path, device) -> None:
    model = small_model(kind, rng, dtype=np.float32).to(device)
    model.metadata = {"encoder": "efficientnet-lite2", "scores": {"CIDEr": 0.42}}
    path = model.save(tmp_path / "model")
    assert path.name == "model.npz"
    features, captions = model_batch(model, rng)
    for loaded in (type(model).load(path, device=device), load_model(path, device=device)):
        assert type(loaded) is type(model) and loaded.device == device
        assert loaded.config() == model.config() and loaded.metadata == model.metadata
        assert loaded.word_to_idx == model.word_to_idx
        for name, value in model.params.items():
            np.testing.assert_array_equal(to_numpy(loaded.params[name]), to_numpy(value))
            assert loaded.params[name].dtype == np.float32
        assert loaded.loss(features, captions)[0] == model.loss(features, captions)[0]
        np.testing.assert_array_equal(loaded.beam_search(features, 2, 6), model.beam_search(features, 2, 6))
    assert load_model(path, dtype=np.float64).params["Wx"].dtype == np.float64


OTHER_CLASS = [(kind, other) for kind in KINDS for other in KINDS if (kind == "attention") != (other == "attention")]


@pytest.mark.parametrize(("kind", "other"), OTHER_CLASS)
def test_files_of_another_model_class_are_refused(kind, other, rng, tmp_path) -> None:
    model_class, path = type(small_model(kind, rng)), small_model(other, rng).save(tmp_path / "other.npz")
    other_name = "AttentionCaptioner" if other == "attention" else "CaptioningRNN"
    with pytest.raises(ModelFileError, match=f"holds a '{other_name}' model, not a {model_class.__name__}"):
        model_class.load(path)


# ---- decoding through init_state, step and select_state ---------------------------------------------------------


@kinds
def test_select_state_keeps_each_images_hypotheses_together(kind, device) -> None:
    """Rows of image n stay within image n's block (what beam search asks): stepping the selected state is
    stepping the whole state and taking those rows, when the state repeats each image B times and when it
    reorders an image's hypotheses."""
    model, features = peaked_model(kind)
    model.to(device)
    N, B = len(features), 3
    words = np.arange(N, dtype=np.int32) % (model.vocab_size - 4) + 4
    _, state = model.step(model.init_state(features), words)
    repeat = np.repeat(np.arange(N), B)  # (N*B,): image n's hypotheses at rows n*B .. n*B + B - 1
    device_repeat, device_reorder = on(device, [repeat, (np.arange(N)[:, None] * B + np.array([2, 0, 0])).ravel()])
    beam_log_probs, _ = model.step(model.select_state(state, device_repeat), words[repeat])
    np.testing.assert_allclose(to_numpy(beam_log_probs), to_numpy(model.step(state, words)[0])[repeat], rtol=1e-12)
    beam_words = (np.arange(N * B, dtype=np.int32) % (model.vocab_size - 4) + 4).astype(np.int32)
    _, beams = model.step(model.select_state(state, device_repeat), beam_words)  # each beam of an image now differs
    reorder = to_numpy(device_reorder)  # within each image's block
    selected = model.step(model.select_state(beams, device_reorder), beam_words[reorder])[0]
    np.testing.assert_allclose(to_numpy(selected), to_numpy(model.step(beams, beam_words)[0])[reorder], rtol=1e-12)


@kinds
def test_a_beam_of_one_is_greedy_search(kind, device) -> None:
    model, features = peaked_model(kind, seed=1)
    model.to(device)
    greedy = greedy_search(model, features, 8, return_attention=model.attends)
    beam = beam_search(model, features, 1, 8, return_attention=model.attends)
    if model.attends:
        np.testing.assert_array_equal(beam[0], greedy[0])
        np.testing.assert_allclose(beam[1], greedy[1], rtol=1e-12)
        greedy, beam = greedy[0], beam[0]
    np.testing.assert_array_equal(beam, greedy)
    np.testing.assert_array_equal(model.sample(features, 8), greedy)
    np.testing.assert_array_equal(model.beam_search(features, 1, 8), greedy)


@kinds
def test_images_decode_apart(kind, device) -> None:
    """Decoding images together or one by one gives the same captions (and attention weights, which are
    distributions over the grid behind every word and zero after <END>)."""
    model, features = peaked_model(kind, seed=3)
    model.to(device)
    together = model.beam_search(features, beam_size=3, max_length=7, return_attention=model.attends)
    for n in range(len(features)):
        alone = model.beam_search(features[n : n + 1], 3, 7, return_attention=model.attends)
        if model.attends:
            np.testing.assert_array_equal(alone[0][0], together[0][n])
            np.testing.assert_allclose(alone[1][0], together[1][n], rtol=1e-12)
        else:
            np.testing.assert_array_equal(alone[0], together[n])
    if model.attends:
        captions, attention = together
        words = captions != NULL
        np.testing.assert_allclose(attention[words].sum(axis=1), 1.0, rtol=1e-12)
        assert not attention[~words].any()


@kinds
@pytest.mark.parametrize(("beam_size", "max_length"), [(3, 7), (4, 6)])
def test_beam_search_beats_greedy_on_total_log_probability(kind, beam_size, max_length, device) -> None:
    model, features = peaked_model(kind, seed=3)
    model.to(device)

    def log_prob(n: int, tokens: np.ndarray) -> float:
        state, previous, total = model.init_state(features[n : n + 1]), START, 0.0
        for token in tokens[tokens != NULL]:
            log_probs, state = model.step(state, np.array([previous]))
            total, previous = total + float(log_probs[0, token]), token
        return total

    beam = model.beam_search(features, beam_size=beam_size, max_length=max_length)
    greedy = model.sample(features, max_length=max_length)
    for n in range(len(features)):
        assert log_prob(n, beam[n]) >= log_prob(n, greedy[n]) - 1e-12


# ---- errors -----------------------------------------------------------------------------------------------------


def _with_row(shape: tuple[int, ...], row: int, value: float) -> np.ndarray:
    features = np.zeros(shape)
    features[row] = value
    return features


# name: (features for a model of feature_shape s, the message; {expected} and {got} stand for the shapes).
BAD_FEATURES = {
    "another width": (lambda s: np.zeros((2, *s[:-1], s[-1] - 1)), "features must have shape {expected}, got {got}"),
    "another rank": (lambda s: np.zeros((2, 3, *s)), "features must have shape {expected}, got {got}"),
    "empty batch": (lambda s: np.zeros((0, *s)), "empty batch"),
    "text": (lambda s: np.full((2, *s), "a"), "numeric"),
    "NaN": (lambda s: _with_row((2, *s), 0, np.nan), r"NaN or infinite .*rows \[0\]"),
    "infinity": (lambda s: _with_row((2, *s), 1, np.inf), r"NaN or infinite .*rows \[1\]"),
}


@kinds
@pytest.mark.parametrize("case", BAD_FEATURES)
def test_bad_features_are_refused(kind, case, rng, device) -> None:
    model = small_model(kind, rng).to(device)
    make, message = BAD_FEATURES[case]
    features = make(model.feature_shape)
    message = message.replace("{expected}", re.escape(model.input_shape_label))
    message = message.replace("{got}", re.escape(str(features.shape)))
    with pytest.raises(ValueError, match=message):
        model.loss(features, np.ones((len(features), 5), dtype=int))
    with pytest.raises(ValueError, match=message):
        model.sample(features)


@kinds
@pytest.mark.parametrize(
    ("captions", "message"),
    [
        (np.full((2, 5), 10), r"token id 10 is outside the vocabulary \[0, 10\)"),
        (np.full((2, 5), -1), "token id -1 is outside"),
        (np.ones((2, 5)), "integer token ids"),
        (np.ones((3, 5), dtype=int), r"captions must have shape \(2, T\)"),
        (np.ones((2, 1), dtype=int), "T >= 2"),
    ],
)
def test_bad_captions_are_refused(kind, captions, message, rng) -> None:
    model = small_model(kind, rng)  # 10 words
    with pytest.raises(ValueError, match=message):
        model.loss(np.zeros((2, *model.feature_shape)), captions)


@kinds
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_dim": 0}, "hidden_dim must be a positive integer"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dtype": np.float16}, "float32 or float64"),
    ],
)
def test_bad_configuration_is_refused(kind, kwargs, message, rng) -> None:
    model_class = type(small_model(kind, rng))
    with pytest.raises(ValueError, match=message):
        model_class(make_vocab(3), **{"input_dim": 4, **kwargs})


@kinds
def test_the_vocabulary_must_have_null(kind, rng) -> None:
    model_class = type(small_model(kind, rng))
    with pytest.raises(ValueError, match="<NULL>"):
        model_class({"a": 0, "b": 1}, input_dim=4)
