"""The shape of each model, one frozen dataclass per model class: the one place its defaults are written.

The defaults are the recipes of the shipped models (an LSTM of W = H = 512 with dropout 0.5 over
EfficientNet-Lite2's 1280-d features; the attention model over its 9 x 9 grid); the model constructors, ``fit``
and ``rnncap train`` all read them from here. A model's ``settings`` is its config; ``config()`` adds the class
name and the dtype for the model file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rnncap.checks import check_positive_int, is_real
from rnncap.nn import CELLS


def _check_common(config: Any, positive: tuple[str, ...]) -> None:
    """Check the sizes and the dropout of ``config`` and make them plain ints and a float (the file is JSON)."""
    for name in positive:
        object.__setattr__(config, name, check_positive_int(name, getattr(config, name)))
    dropout = config.dropout
    if not is_real(dropout) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
    object.__setattr__(config, "dropout", float(dropout))


IMAGE_INPUTS = ("init", "first_word")
"""How a :class:`RNNConfig`'s image enters the recurrence: as the initial state, or as the first input."""


@dataclass(frozen=True)
class RNNConfig:
    """A :class:`~rnncap.models.CaptioningRNN`.

    Attributes:
        input_dim: D, the width of an image's pooled feature vector.
        wordvec_dim: W, the width of a word vector.
        hidden_dim: H, the width of the recurrent state.
        cell_type: ``"rnn"``, ``"lstm"`` or ``"gru"``.
        dropout: probability of dropping a unit of the word vectors and of the hidden states before the vocabulary
            projection, while training; 0 turns it off.
        image_input: how the image enters the recurrence. ``"init"`` (CS231n): the projected image is the initial
            hidden state, ``h0 = features @ W_proj + b_proj`` (H wide), ``c0 = 0``. ``"first_word"`` (Show and
            Tell): the projected image (W wide, like a word vector) is the cell's input before ``<START>``, from
            ``h0 = c0 = 0``; its output predicts nothing. Files written before the setting existed are ``"init"``.
    """

    input_dim: int = 1280
    wordvec_dim: int = 512
    hidden_dim: int = 512
    cell_type: str = "lstm"
    dropout: float = 0.5
    image_input: str = "init"

    def __post_init__(self) -> None:
        _check_common(self, ("input_dim", "wordvec_dim", "hidden_dim"))
        if self.cell_type not in CELLS:
            raise ValueError(f"cell_type must be one of {sorted(CELLS)}, got {self.cell_type!r}")
        if self.image_input not in IMAGE_INPUTS:
            raise ValueError(f"image_input must be one of {list(IMAGE_INPUTS)}, got {self.image_input!r}")


@dataclass(frozen=True)
class AttentionConfig:
    """An :class:`~rnncap.models.AttentionCaptioner` (its cell is an LSTM).

    Attributes:
        input_dim: D, the channels of a grid location.
        num_locations: L, the locations of a grid (81 for a 9 x 9 grid).
        wordvec_dim: W; hidden_dim: H; attention_dim: A, the width of the additive attention.
        alpha_reg: lambda, the weight of the doubly stochastic regulariser (the paper's 1.0; 0 turns it off).
        dropout: as in :class:`RNNConfig`.
    """

    input_dim: int = 1280
    num_locations: int = 81
    wordvec_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    alpha_reg: float = 1.0
    dropout: float = 0.5

    def __post_init__(self) -> None:
        _check_common(self, ("input_dim", "num_locations", "wordvec_dim", "hidden_dim", "attention_dim"))
        if not is_real(self.alpha_reg) or not 0 <= self.alpha_reg < math.inf:
            raise ValueError(f"alpha_reg must be a finite number >= 0, got {self.alpha_reg!r}")
        object.__setattr__(self, "alpha_reg", float(self.alpha_reg))


ModelConfig = RNNConfig | AttentionConfig
