"""Hand-written layers: pure NumPy functions, ``*_forward(...) -> (out, cache)`` and
``*_backward(dout, cache) -> grads`` in the order of the forward inputs (CS231n's names and shapes)."""

from rnncap.nn.affine import (
    affine_backward,
    affine_forward,
    temporal_affine_backward,
    temporal_affine_forward,
)
from rnncap.nn.attention import (
    attend,
    attention_gate_backward,
    attention_gate_forward,
    attention_lstm_backward,
    attention_lstm_forward,
    attention_step_backward,
    attention_step_forward,
    doubly_stochastic_loss,
)
from rnncap.nn.dropout import dropout_backward, dropout_forward
from rnncap.nn.embedding import word_embedding_backward, word_embedding_forward
from rnncap.nn.gru import GRU, gru_backward, gru_forward, gru_step_backward, gru_step_forward
from rnncap.nn.loss import log_softmax, softmax_cross_entropy, temporal_softmax_loss
from rnncap.nn.lstm import LSTM, lstm_backward, lstm_forward, lstm_step_backward, lstm_step_forward
from rnncap.nn.recurrent import Cell, sequence_backward, sequence_forward, step_backward, step_forward
from rnncap.nn.rnn import RNN, rnn_backward, rnn_forward, rnn_step_backward, rnn_step_forward

CELLS: dict[str, Cell] = {cell.name: cell for cell in (RNN, LSTM, GRU)}

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "Cell",
    "affine_backward",
    "affine_forward",
    "attend",
    "attention_gate_backward",
    "attention_gate_forward",
    "attention_lstm_backward",
    "attention_lstm_forward",
    "attention_step_backward",
    "attention_step_forward",
    "dropout_backward",
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
    "step_backward",
    "step_forward",
    "temporal_affine_backward",
    "temporal_affine_forward",
    "temporal_softmax_loss",
    "word_embedding_backward",
    "word_embedding_forward",
]
