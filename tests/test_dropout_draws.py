"""Dropout drawn caption by caption for a global batch (rnncap.nn.DropoutDraws): the loss and gradients of a
batch split into blocks, each block's weighted by its share, sum to those of the whole batch with the same masks —
what data-parallel training relies on."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import model_batch, small_model
from rnncap.nn import DropoutDraws, dropout_forward


def _block_sum(model, features, captions, seed, bounds):
    """Loss and gradients of the blocks ``bounds`` of one global batch, each weighted by its share of it, summed."""
    N = len(captions)
    rngs = [np.random.default_rng(seed) for _ in bounds]  # one generator per process, all in step
    total_loss, total_grads = 0.0, {name: 0.0 for name in model.params}
    for rng, (start, stop) in zip(rngs, bounds, strict=True):
        draws = DropoutDraws(rng, rows=slice(start, stop), total=N)
        loss, grads = model.loss(features[start:stop], captions[start:stop], rng=draws)
        share = (stop - start) / N
        total_loss += share * loss
        for name, grad in grads.items():
            total_grads[name] = total_grads[name] + share * grad
    states = [rng.bit_generator.state for rng in rngs]
    assert all(state == states[0] for state in states)  # every process's generator advanced alike
    return total_loss, total_grads, states[0]


CASES = [("rnn", "init"), ("lstm", "init"), ("gru", "init"), ("lstm", "first_word"), ("gru", "first_word")]


@pytest.mark.parametrize(("kind", "image_input"), [*CASES, ("attention", None)])
def test_blocks_of_a_batch_add_up_to_the_batch_with_the_same_dropout(kind, image_input):
    settings = {} if image_input is None else {"image_input": image_input}
    rng = np.random.default_rng(0)
    model = small_model(kind, rng, dropout=0.4, **settings)
    features, captions = model_batch(model, rng, n=7, t=8)
    # The first block holds only short captions, so it runs fewer steps than the batch (shift_captions trims the
    # padding): each caption's draws must not depend on that. Lengths also differ inside the second block, so that
    # sorting by length permutes its captions differently from the whole batch's.
    captions[:3, 3:] = model.null_id
    captions[5, 5:] = model.null_id
    whole_rng = np.random.default_rng(11)
    loss, grads = model.loss(features, captions, rng=whole_rng)
    block_loss, block_grads, state = _block_sum(model, features, captions, 11, [(0, 3), (3, 7)])
    assert abs(block_loss - loss) < 1e-12 * abs(loss)
    for name, grad in grads.items():
        np.testing.assert_allclose(block_grads[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)
    assert state == whole_rng.bit_generator.state
    # Dropout really acts: without the draws the loss differs, and other draws give another loss.
    assert abs(model.loss(features, captions, rng=None)[0] - loss) > 1e-6
    assert abs(model.loss(features, captions, rng=np.random.default_rng(12))[0] - loss) > 1e-6


def test_draws_refuse_a_block_that_is_not_the_minibatch():
    draws = DropoutDraws(np.random.default_rng(0), rows=slice(2, 5), total=8)
    assert draws.per_caption(3, (2,)).shape == (3, 2)
    with pytest.raises(
        ValueError, match="block 2:5 of a global batch of 8 captions holds 3 captions, but the minibatch has 4"
    ):
        draws.per_caption(4, (2,))
    with pytest.raises(ValueError, match="contiguous block"):
        DropoutDraws(np.random.default_rng(0), rows=slice(0, 8, 2), total=8)
    with pytest.raises(ValueError, match="numpy Generator"):
        DropoutDraws(42)


def test_dropout_forward_takes_draws_of_the_units_shape():
    x = np.ones((3, 4))
    uniform = np.linspace(0, 0.99, 12).reshape(3, 4)
    out, cache = dropout_forward(x, 0.5, uniform)
    np.testing.assert_array_equal(out, np.where(uniform >= 0.5, 2.0, 0.0))
    np.testing.assert_array_equal(cache, out)
    with pytest.raises(ValueError, match=r"dropout draws of shape \(4, 3\) for units of shape \(3, 4\)"):
        dropout_forward(x, 0.5, uniform.T.copy())
