"""Packed sequences (rnncap.nn.packed): a batch sorted by length runs only its active rows at every step.

The packed path must equal the padded one on every row's own steps (float64, to 1e-12), pass numeric gradient
checks, and give torch.nn.utils.rnn.pack_padded_sequence's gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import model_batch, on, parity_captions, small_model
from rnncap import nn
from rnncap.backend import to_numpy
from rnncap.gradcheck import check_layer
from rnncap.models import attention_captioner, captioning_rnn
from rnncap.models.teacher_forcing import length_order, packed_steps
from rnncap.nn.packed import active_from_lengths, check_active, pack, sort_by_length, unpack

N, T, D, H = 5, 6, 3, 4
LENGTHS = np.array([6, 5, 5, 2, 1])  # sorted, with ties and a caption shorter than the batch's longest
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
W, L, A = 5, 6, 7  # the attention decoder's word width, grid locations and attention width


def _cell_inputs(rng, k):
    return [
        rng.standard_normal((N, T, D)),
        rng.standard_normal((N, H)),
        rng.standard_normal((D, k * H)) * 0.5,
        rng.standard_normal((H, k * H)) * 0.5,
        rng.standard_normal(k * H),
    ]


def _valid(lengths, T):
    """(N, T, 1) True on a row's own steps."""
    return (np.arange(T)[None, :] < lengths[:, None])[:, :, None]


def _assert_close(padded, packed, valid, tol=1e-12):
    """Equal where the rows run; the padded path's dx is zero past a row's length already (its dh is)."""
    for name, a, b in zip(padded._fields, padded, packed, strict=True):
        a, b = to_numpy(a), to_numpy(b)
        a = a * valid if name == "dx" else a
        assert np.max(np.abs(a - b)) < tol, name


@pytest.mark.parametrize("cell", sorted(GATES))
def test_packed_equals_padded_on_the_rows_own_steps(cell, rng, device):
    forward, backward = getattr(nn, f"{cell}_forward"), getattr(nn, f"{cell}_backward")
    inputs = on(device, _cell_inputs(rng, GATES[cell]))
    valid = _valid(LENGTHS, T)
    (dh,) = on(device, [rng.standard_normal((N, T, H)) * valid])  # the vocabulary loss gives padding no gradient
    h_padded, cache = forward(*inputs)
    padded = backward(dh, cache)
    h_packed, cache = forward(*inputs, active=active_from_lengths(LENGTHS, T))
    packed = backward(dh, cache)
    h_padded, h_packed = to_numpy(h_padded), to_numpy(h_packed)
    assert np.max(np.abs(h_padded * valid - h_packed)) < 1e-12
    assert not np.any(h_packed[~valid[:, :, 0]])  # nothing computed past a row's length
    _assert_close(padded, packed, valid)


@pytest.mark.parametrize("cell", sorted(GATES))
def test_packed_gradients(cell, rng, device):
    active = active_from_lengths(LENGTHS, T)
    forward = lambda *inputs: getattr(nn, f"{cell}_forward")(*inputs, active=active)  # noqa: E731
    errors = check_layer(forward, getattr(nn, f"{cell}_backward"), on(device, _cell_inputs(rng, GATES[cell])))
    assert max(errors) < 1e-7, errors


def test_packed_equals_padded_for_random_lengths(rng):
    """Many random batches (lengths 0..T, sorted), the LSTM: the same gradients as the padded path."""
    for _ in range(20):
        lengths = np.sort(rng.integers(0, T + 1, N))[::-1]
        inputs, valid = _cell_inputs(rng, 4), _valid(lengths, T)
        dh = rng.standard_normal((N, T, H)) * valid
        padded = nn.lstm_backward(dh, nn.lstm_forward(*inputs)[1])
        packed = nn.lstm_backward(dh, nn.lstm_forward(*inputs, active=active_from_lengths(lengths, T))[1])
        _assert_close(padded, packed, valid)


def _decoder_inputs(rng, T):
    return [
        rng.standard_normal((N, T, W)),
        rng.standard_normal((N, L, D)),
        rng.standard_normal((N, L, A)),
        rng.standard_normal((N, H)),
        rng.standard_normal((N, H)),
        rng.standard_normal((W + D, 4 * H)) * 0.3,
        rng.standard_normal((H, 4 * H)) * 0.3,
        rng.standard_normal(4 * H),
        rng.standard_normal((H, A)) * 0.3,
        rng.standard_normal(A) * 0.5,
        rng.standard_normal((H, 1)),
        rng.standard_normal(1),
    ]


def _grid_mask():
    mask = np.ones((N, L), dtype=bool)
    mask[1, 4:] = False
    mask[4, 1:] = False
    return mask


@pytest.mark.parametrize("masked", [False, True])
def test_packed_attention_decoder_equals_padded(masked, rng, device):
    (mask,) = on(device, [_grid_mask() if masked else None])
    inputs, valid = on(device, _decoder_inputs(rng, T)), _valid(LENGTHS, T)
    dh, dalpha = on(device, [rng.standard_normal((N, T, H)) * valid, rng.standard_normal((N, T, L)) * valid])
    h_padded, alpha_padded, cache = nn.attention_lstm_forward(*inputs, mask=mask)
    padded = nn.attention_lstm_backward(dh, dalpha, cache)
    active = active_from_lengths(LENGTHS, T)
    h_packed, alpha_packed, cache = nn.attention_lstm_forward(*inputs, mask=mask, active=active)
    packed = nn.attention_lstm_backward(dh, dalpha, cache)
    h_padded, alpha_padded, h_packed, alpha_packed = map(to_numpy, (h_padded, alpha_padded, h_packed, alpha_packed))
    assert np.max(np.abs(h_padded * valid - h_packed)) < 1e-12
    assert np.max(np.abs(alpha_padded * valid - alpha_packed)) < 1e-12
    _assert_close(padded, packed, valid)


def test_packed_attention_decoder_without_active_rows_at_the_end(rng):
    """Steps where no row is active run nothing; an all-padding batch (no active row at all) has zero gradients."""
    inputs = _decoder_inputs(rng, T)
    for lengths in (np.array([4, 3, 3, 1, 0]), np.zeros(N, dtype=int)):
        valid = _valid(lengths, T)
        dh = rng.standard_normal((N, T, H)) * valid
        padded = nn.attention_lstm_backward(dh, None, nn.attention_lstm_forward(*inputs)[2])
        active = active_from_lengths(lengths, T)
        h, _, cache = nn.attention_lstm_forward(*inputs, active=active)
        assert not np.any(h[~valid[:, :, 0]])
        _assert_close(padded, nn.attention_lstm_backward(dh, None, cache), valid)


def test_packed_attention_decoder_gradients(rng, device):
    active = active_from_lengths(LENGTHS, T)
    (mask,) = on(device, [_grid_mask()])
    forward = lambda *inputs: nn.attention_lstm_forward(*inputs, mask=mask, active=active)  # noqa: E731
    errors = check_layer(forward, nn.attention_lstm_backward, on(device, _decoder_inputs(rng, T)), rng=1)
    assert max(errors) < 1e-7, errors


@pytest.mark.parametrize("cell", sorted(GATES))
def test_packed_gradients_match_torch_pack_padded_sequence(cell, rng):
    torch = pytest.importorskip("torch", reason="the twin check compares against PyTorch")
    import torch_twin

    x, h0, Wx, Wh, b = _cell_inputs(rng, GATES[cell])
    dh = rng.standard_normal((N, T, H)) * _valid(LENGTHS, T)
    packed = nn.sequence_backward(
        getattr(nn, cell.upper()),
        dh,
        nn.sequence_forward(getattr(nn, cell.upper()), x, h0, Wx, Wh, b, active_from_lengths(LENGTHS, T))[1],
    )

    order = torch_twin.gate_order(cell, H)
    module = torch_twin._recurrent_module(cell, D, H).double()
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(Wx[:, order].T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(Wh[:, order].T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(b[order].copy()))
        module.bias_hh_l0.zero_()
    tx, th0 = torch.tensor(x, requires_grad=True), torch.tensor(h0, requires_grad=True)
    seq = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(LENGTHS), batch_first=True)
    state = (th0[None], torch.zeros_like(th0)[None]) if cell == "lstm" else th0[None]
    out, _ = module(seq, state)
    th, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    (th * torch.from_numpy(dh)).sum().backward()
    twin = {
        "dx": tx.grad.numpy(),
        "dh0": th0.grad.numpy(),
        "dWx": module.weight_ih_l0.grad.numpy().T[:, order],
        "dWh": module.weight_hh_l0.grad.numpy().T[:, order],
        "db": module.bias_ih_l0.grad.numpy()[order],
    }
    for name, grad in twin.items():
        np.testing.assert_allclose(getattr(packed, name), grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_pack_and_unpack_are_inverse_on_active_rows(rng):
    counts = active_from_lengths(LENGTHS, T)
    x = rng.standard_normal((T, N, 2))
    packed = pack(x, counts)
    assert packed.shape == (LENGTHS.sum(), 2)
    np.testing.assert_array_equal(unpack(packed, counts, N), x * _valid(LENGTHS, T).transpose(1, 0, 2))


def test_active_counts_and_sorting():
    np.testing.assert_array_equal(active_from_lengths(LENGTHS, T), [5, 4, 3, 3, 3, 1])
    order = sort_by_length(np.array([2, 5, 2, 7]))
    np.testing.assert_array_equal(order, [3, 1, 0, 2])  # descending, ties in their order


@pytest.mark.parametrize(
    ("active", "message"),
    [
        (np.array([3, 4, 2, 1, 1, 0]), "non-increasing"),
        (np.array([6, 5, 4, 3, 2, 1]), "between 0 and N=5"),
        (np.array([5, 4, 3]), r"\(6,\) integer array"),
        (np.full(T, 2.0), r"\(6,\) integer array"),
    ],
)
def test_bad_active_is_refused(active, message, rng):
    with pytest.raises(ValueError, match=message):
        check_active(active, N, T)
    with pytest.raises(ValueError, match=message):
        nn.lstm_forward(*_cell_inputs(rng, 4), active=active)


def test_unsorted_lengths_are_refused():
    with pytest.raises(ValueError, match="sorted in descending order"):
        active_from_lengths(np.array([2, 5, 1]), T)


# ---- the models' teacher-forced loss runs packed --------------------------------------------------------------

MODELS = [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", {"image_input": "first_word"}), ("attention", {})]


def _padded(monkeypatch, kind):
    """The models' loss as before packing: every row at every step (the recurrence's ``active`` left None)."""
    module = attention_captioner if kind == "attention" else captioning_rnn
    monkeypatch.setattr(module, "packed_steps", lambda lengths, T: None)


@pytest.mark.parametrize(("kind", "settings"), MODELS, ids=["rnn", "lstm", "gru", "lstm-first-word", "attention"])
@pytest.mark.parametrize("weighted", [False, True])
def test_model_loss_packed_equals_padded(kind, settings, weighted, rng, monkeypatch, device):
    """Same loss and gradients to 1e-12 (float64) on captions of 0 to T words, in an unsorted batch."""
    model = small_model(kind, rng, **settings).to(device)
    captions = parity_captions(rng, 8, model.vocab_size)[[3, 0, 5, 1, 6, 2, 4]]  # not sorted by length
    captions[captions == 3] = 4  # no <UNK>: the weighted loss leaves it out of the softmax
    features = rng.standard_normal((len(captions), *model.feature_shape))
    weights = rng.standard_normal(len(captions)) if weighted else None
    loss, grads = model.loss(features, captions, caption_weights=weights)
    _padded(monkeypatch, kind)
    padded_loss, padded_grads = model.loss(features, captions, caption_weights=weights)
    assert abs(loss - padded_loss) < 1e-12
    for name, grad in padded_grads.items():
        assert np.max(np.abs(to_numpy(grads[name]) - to_numpy(grad))) < 1e-12, name


@pytest.mark.parametrize("kind", ["lstm", "attention"])
def test_model_loss_is_the_mean_of_each_captions_own(kind, rng):
    """Sorting must keep each caption with its photo (and weight): the batch's loss and gradients are the mean of
    the captions' losses run one at a time (no padding, nothing to sort)."""
    model = small_model(kind, rng)
    features, captions = model_batch(model, rng, n=5, t=8)
    weights = rng.standard_normal(5)
    loss, grads = model.loss(features, captions, caption_weights=weights)
    alone = [model.loss(features[i : i + 1], captions[i : i + 1], caption_weights=weights[i : i + 1]) for i in range(5)]
    assert loss == pytest.approx(np.mean([one[0] for one in alone]), abs=1e-12)
    for name, grad in grads.items():
        assert np.max(np.abs(grad - np.mean([one[1][name] for one in alone], axis=0))) < 1e-12, name


def test_length_order_counts_up_to_the_last_counted_target():
    captions = np.array([[1, 5, 2, 0, 0], [1, 5, 6, 7, 2], [1, 0, 5, 2, 0], [1, 2, 0, 0, 0]])
    order, lengths = length_order(captions, null_id=0)
    np.testing.assert_array_equal(order, [1, 2, 0, 3])  # a <NULL> inside row 2 does not shorten it
    np.testing.assert_array_equal(lengths, [4, 3, 2, 1])
    assert packed_steps(np.array([4, 4]), 4) is None  # nothing to skip: no packing
    np.testing.assert_array_equal(packed_steps(np.array([4, 2]), 4), [2, 2, 1, 1])
