"""The divergence rule (rnncap.train.divergence) on numbers worked out by hand; the trainer runs that stop by it,
and those that must never, are in test_train.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnncap.train.divergence import LOSS_FACTOR, WINDOW, divergence_reason, know_nothing_loss, loss_level


def test_know_nothing_loss_is_log_v_per_target_word_per_caption():
    # Targets are captions[:, 1:] other than <NULL> (0): 3 words + <END>, and 1 word + <END>: 6 over 2 captions.
    captions = np.array([[1, 5, 6, 7, 2, 0], [1, 8, 2, 0, 0, 0]])
    assert know_nothing_loss(captions, null_id=0, vocab_size=20) == pytest.approx(3 * math.log(20))


def test_the_level_is_the_running_median_or_the_know_nothing_loss_whichever_is_larger():
    assert loss_level([], 5.0) == 5.0
    assert loss_level([1.0, 2.0, 100.0], 5.0) == 5.0  # a median: one spike does not raise it
    assert loss_level([30.0, 40.0, 1e9], 5.0) == 40.0
    old = [1e9] * 10 + [50.0] * WINDOW  # only the last WINDOW losses count
    assert loss_level(old, 5.0) == 50.0


@pytest.mark.parametrize(
    ("loss", "norm", "recent", "message"),
    [
        (math.nan, 1.0, [], "loss nan, gradient norm 1.0"),
        (3.0, math.inf, [], "loss 3.0, gradient norm inf"),
        (LOSS_FACTOR * 10 + 1, 1.0, [], "loss 201 is more than 20 times its level 10 "),
        (LOSS_FACTOR * 40 + 1, 1.0, [40.0] * 5, "more than 20 times its level 40 "),
    ],
)
def test_divergence_reasons(loss, norm, recent, message):
    assert message in divergence_reason(loss, norm, recent, know_nothing=10.0)


def test_losses_up_to_the_factor_times_the_level_are_training():
    assert divergence_reason(LOSS_FACTOR * 10, 1e6, [], know_nothing=10.0) is None
    assert divergence_reason(LOSS_FACTOR * 40, 1.0, [40.0] * 5, know_nothing=10.0) is None
    assert divergence_reason(0.0, 0.0, [1.0], know_nothing=0.0) is None  # a perfect fit is no divergence
