"""When a training run has diverged: the rule the trainer checks after every minibatch, before the update.

A run has diverged when its loss or its gradient norm is NaN or infinite, or when the minibatch loss is more than
:data:`LOSS_FACTOR` times its *level*: the larger of

- the median of the last :data:`WINDOW` minibatch losses (the running level; a median, so that one spike does
  not move it), and
- the loss of knowing nothing: guessing every word uniformly among the V of the vocabulary, ``log V`` per target
  word, summed over the minibatch's target words and averaged over its captions (the loss's own normalisation).

Why both: a learning rate far too large (Adam at 1e3) ruins the weights at the first update, so the running level
is garbage from the start and only the know-nothing loss shows the jump (the second minibatch is thousands of times
above it); the running level catches a run that has crept above the know-nothing loss and then jumps again.

Why ``LOSS_FACTOR = 20``: a model starts near the know-nothing loss and learning lowers it. Across rnn, lstm, gru
and attention models over tiny data, batches of 1 to 128 and learning rates up to 50 times the default (with
and without dropout and decay, thousands of minibatches), no minibatch loss came to 4 times the first one, nor to
10 times its level; a loss 20 times the know-nothing loss means the model gives the words of a caption on average
a probability below ``V ** -20``, which no learning produces. The attention model's regulariser adds at most
``lambda * (L - 1 + (T - 1) ** 2)`` per caption, far below that. The rule reads only the run's history of losses
(``history["iteration_loss"]``), which every checkpoint keeps, so a resumed run checks exactly what the
uninterrupted one would have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class TrainingDiverged(RuntimeError):  # noqa: N818 (named for the event, like StopIteration)
    """The loss or a gradient became NaN or infinite, or the loss jumped far above its level (the rule above);
    nothing of that epoch was written to disk."""

    def __init__(self, message: str, epoch: int, iteration: int | None, loss: float | None) -> None:
        super().__init__(message)
        self.epoch, self.iteration, self.loss = epoch, iteration, loss


#: A minibatch loss above this many times its level (see the module docstring) is divergence.
LOSS_FACTOR = 20.0
#: Minibatch losses in the running median.
WINDOW = 50


def know_nothing_loss(captions: np.ndarray, null_id: int, vocab_size: int) -> float:
    """The loss of a uniform guess among ``vocab_size`` words on (N, T) ``captions``: ``log V`` per target word
    (``captions[:, 1:]`` other than ``null_id``), summed over time and averaged over the N captions."""
    targets = int(np.count_nonzero(captions[:, 1:] != null_id))
    return targets * math.log(max(vocab_size, 2)) / max(len(captions), 1)


def loss_level(recent_losses: Sequence[float], know_nothing: float) -> float:
    """The level a minibatch loss is compared with: the larger of the median of the last :data:`WINDOW` losses
    and ``know_nothing`` (:func:`know_nothing_loss`)."""
    window = recent_losses[-WINDOW:]
    running = float(np.median(window)) if len(window) else 0.0
    return max(running, know_nothing)


def divergence_reason(loss: float, grad_norm: float, recent_losses: Sequence[float], know_nothing: float) -> str | None:
    """Why a minibatch shows that training diverged, or None when it does not.

    Args:
        loss: the minibatch loss.
        grad_norm: the global norm of its gradients (before clipping).
        recent_losses: the run's earlier minibatch losses, oldest first.
        know_nothing: the minibatch's :func:`know_nothing_loss`.
    """
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        return f"loss {loss}, gradient norm {grad_norm}"
    level = loss_level(recent_losses, know_nothing)
    if loss > LOSS_FACTOR * level:
        return (
            f"loss {loss:.6g} is more than {LOSS_FACTOR:g} times its level {level:.6g} (the larger of the median "
            f"of the last {WINDOW} minibatch losses and {know_nothing:.6g}, the loss of guessing every word)"
        )
    return None
