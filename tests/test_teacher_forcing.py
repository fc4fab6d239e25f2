"""The word side shared by every captioner: shifted captions, word vectors and the masked vocabulary loss."""

from __future__ import annotations

import numpy as np

from rnncap.gradcheck import numerical_gradient, rel_error
from rnncap.models.teacher_forcing import (
    embed_words_backward,
    embed_words_forward,
    shift_captions,
    vocab_loss_backward,
    vocab_loss_forward,
)
from rnncap.nn import temporal_affine_forward, temporal_softmax_loss


def test_shift_captions_trims_padding_columns_and_goes_time_major():
    captions = np.array([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0]])
    ids_in, ids_out, mask = shift_captions(captions, null_id=0)
    np.testing.assert_array_equal(ids_in, [[1, 1], [5, 7], [6, 2]])
    np.testing.assert_array_equal(ids_out, [[5, 7], [6, 2], [2, 0]])
    np.testing.assert_array_equal(mask, [[True, True], [True, True], [True, False]])
    ids_in, ids_out, mask = shift_captions(np.array([[1, 0, 0]]), null_id=0)  # nothing counts: one column
    assert ids_in.shape == ids_out.shape == mask.shape == (1, 1) and not mask.any()


def test_vocab_loss_is_cs231ns_temporal_softmax_loss_and_its_gradients_check(rng):
    T, N, H, V = 4, 3, 5, 7
    h = rng.standard_normal((T, N, H))
    W, b = rng.standard_normal((H, V)), rng.standard_normal(V)
    ids_out = rng.integers(0, V, size=(T, N))
    mask = np.ones((T, N), dtype=bool)
    mask[2:, 0] = mask[3, 2] = False
    loss, cache = vocab_loss_forward(h, ids_out, mask, W, b, 0.0, None)
    scores, _ = temporal_affine_forward(h.transpose(1, 0, 2), W, b)
    expected, _ = temporal_softmax_loss(scores, ids_out.T, mask.T)
    assert abs(loss - expected) < 1e-12
    dh, dW, db = vocab_loss_backward(cache)
    assert not dh[~mask].any()  # nothing flows back from padding
    for analytic, x in ((dh, h), (dW, W), (db, b)):
        numeric = numerical_gradient(lambda: vocab_loss_forward(h, ids_out, mask, W, b, 0.0, None)[0], x)
        assert rel_error(analytic, numeric) < 1e-8


def test_word_vectors_drop_where_their_draws_fall_below_the_probability(rng):
    W_embed = rng.standard_normal((6, 4))
    ids = np.array([[1, 1], [3, 5]])
    draws = np.random.default_rng(3).random((2, 2, 4))
    x, cache = embed_words_forward(ids, W_embed, 0.5, draws)
    np.testing.assert_array_equal(x != 0, draws >= 0.5)
    kept = x != 0
    np.testing.assert_array_equal(x[kept], 2 * W_embed[ids][kept])  # inverted dropout: survivors scaled by 2
    dW = embed_words_backward(np.ones_like(x), cache)
    expected = np.zeros_like(W_embed)
    np.add.at(expected, ids, 2.0 * kept)
    np.testing.assert_allclose(dW, expected)
    same, _ = embed_words_forward(ids, W_embed, 0.5, None)  # no draws (validation): nothing dropped
    np.testing.assert_array_equal(same, W_embed[ids])
