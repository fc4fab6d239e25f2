"""Hand-written layers: pure NumPy functions with CS231n's names and shapes, which run on a GPU too: each takes its
array module from its inputs (:func:`rnncap.backend.array_module`), so CuPy arrays in give CuPy arrays out.

Every layer is a pair: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache) -> grads``, the gradients in
the order of the forward inputs. Where there are five or more they come as a named tuple, which unpacks like
CS231n's tuple and reads by name too::

    h, cache = lstm_forward(x, h0, Wx, Wh, b)                   # x (N, T, D), h0 (N, H) -> h (N, T, H)
    dx, dh0, dWx, dWh, db = lstm_backward(dh, cache)            # a SequenceGrads
    grads = attention_lstm_backward(dh, dalpha, decoder_cache)  # an AttentionLSTMGrads: grads.dWx, grads.dw_att, ...

Modules: ``affine``, ``embedding``, ``dropout``, ``loss``, ``activations``; the recurrent cells ``rnn``, ``lstm``,
``gru`` over the shared recurrence ``recurrent`` (:class:`Cell`, :func:`sequence_forward`, ...); soft attention
``attention`` (the attention step, the gate, the regulariser) and its decoder ``attention_lstm``; ``packed``:
packed sequences (a batch sorted by length; ``active=active_from_lengths(lengths, T)`` makes the recurrences run
only the rows still active at each step).

:mod:`rnncap.nn.reference` holds plain, unoptimised versions of the cells and the attention step, checkable by eye:
the tests' oracle for the fast layers here. They are deliberately not exported from this package.
"""

from rnncap.nn.affine import (
    affine_backward,
    affine_forward,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.nn.attention import (
    AttentionStepGrads,
    attend,
    attention_gate_backward,
    attention_gate_forward,
    attention_step_backward,
    attention_step_forward,
    doubly_stochastic_loss,
)
from rnncap.nn.attention_lstm import AttentionLSTMGrads, attention_lstm_backward, attention_lstm_forward
from rnncap.nn.dropout import DropoutDraws, dropout_backward, dropout_draws, dropout_forward
from rnncap.nn.embedding import word_embedding_backward, word_embedding_forward
from rnncap.nn.gru import GRU, gru_backward, gru_forward, gru_step_backward, gru_step_forward
from rnncap.nn.loss import log_softmax, softmax_cross_entropy, temporal_softmax_loss
from rnncap.nn.lstm import LSTM, lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward
from rnncap.nn.packed import active_from_lengths, sort_by_length
from rnncap.nn.recurrent import (
    Cell,
    HiddenStepGrads,
    SequenceGrads,
    StepGrads,
    sequence_backward,
    sequence_forward,
    step_backward,
    step_forward,
)
from rnncap.nn.rnn import RNN, rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward

CELLS: dict[str, Cell] = {cell.name: cell for cell in (RNN, LSTM, GRU)}

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "AttentionLSTMGrads",
    "AttentionStepGrads",
    "Cell",
    "HiddenStepGrads",
    "SequenceGrads",
    "StepGrads",
    "active_from_lengths",
    "affine_backward",
    "affine_forward",
    "attend",
    "attention_gate_backward",
    "attention_gate_forward",
    "attention_lstm_backward",
    "attention_lstm_forward",
    "attention_step_backward",
    "attention_step_forward",
    "DropoutDraws",
    "dropout_backward",
    "dropout_draws",
    "dropout_forward",
    "doubly_stochastic_loss",
    "gru_backward",
    "gru_forward",
    "gru_step_backward",
    "gru_step_forward",
    "log_softmax",
    "lstm_backward",
    "lstm_forward",
    "lstm_step_backward",
    "lstm_step_forward",
    "rnn_backward",
    "rnn_forward",
    "rnn_step_backward",
    "rnn_step_forward",
    "sequence_backward",
    "sequence_forward",
    "softmax_cross_entropy",
    "sort_by_length",
    "step_backward",
    "step_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]
