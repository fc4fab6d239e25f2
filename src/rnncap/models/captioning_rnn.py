"""CaptioningRNN: image features -> a recurrent network that writes the caption.

The model of CS231n assignment 3 (names, shapes, initialisation and loss), with the GRU beside the vanilla RNN
and the LSTM, beam search, input checks and a safe file format. Training runs
``<START> w1 ... --W_embed--> x``, ``cell(x, h0) -> h``, ``h --W_vocab--> scores`` and a softmax loss against the
caption shifted by one word, ignoring ``<NULL>`` padding (the loss equals CS231n's ``temporal_affine`` +
``temporal_softmax_loss``; padding is skipped rather than computed and multiplied by zero).

The image enters in one of two ways (``image_input``):

- ``"init"`` (CS231n): ``features --W_proj--> h0`` (N, H), ``c0 = 0``; T steps, one per input word.
- ``"first_word"`` (Vinyals et al., "Show and Tell", CVPR 2015): ``features --W_proj--> x_{-1}`` (N, W) is the
  cell's input before ``<START>``, from ``h0 = c0 = 0``; T + 1 steps, the first one's output predicts nothing.
  Decoding runs that image step in :meth:`CaptioningRNN.init_state`, so the searches see the same contract.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module, to_device
from rnncap.models.base import CaptionModel
from rnncap.models.config import RNNConfig
from rnncap.models.teacher_forcing import (
    embed_words_backward,
    embed_words_forward,
    length_order,
    packed_steps,
    shift_captions,
    time_major_draws,
    vocab_loss_backward,
    vocab_loss_forward,
)
from rnncap.nn import (
    CELLS,
    DropoutDraws,
    affine_backward,
    affine_forward,
    dropout_backward,
    dropout_draws,
    dropout_forward,
    log_softmax,
    sequence_backward,
    sequence_forward,
    step_forward,
)


class CaptioningRNN(CaptionModel):
    """A recurrent image captioner (CS231n's ``CaptioningRNN``).

    Parameters live in ``self.params`` under CS231n's names: ``W_proj`` (D, P), ``b_proj`` (P,), ``W_embed``
    (V, W), ``Wx`` (W, kH), ``Wh`` (H, kH), ``b`` (kH,), ``W_vocab`` (H, V), ``b_vocab`` (V,), with k = 1 (rnn),
    4 (lstm: gates i, f, o, g) or 3 (gru: gates r, z, n), and P = H (``image_input="init"``: the image is h0) or
    W (``"first_word"``: the image is the first input).
    """

    settings_class = RNNConfig
    input_dim: int
    wordvec_dim: int
    hidden_dim: int
    cell_type: str
    image_input: str

    def __init__(
        self,
        word_to_idx: dict[str, int],
        input_dim: int = RNNConfig.input_dim,
        wordvec_dim: int = RNNConfig.wordvec_dim,
        hidden_dim: int = RNNConfig.hidden_dim,
        cell_type: str = RNNConfig.cell_type,
        dtype: np.dtype | type | str = np.float32,
        rng: np.random.Generator | int | None = 0,
        dropout: float = RNNConfig.dropout,
        image_input: str = RNNConfig.image_input,
    ) -> None:
        """Build a model with CS231n's initialisation; the defaults are :class:`RNNConfig`'s (flickr8k-lstm's).

        Args:
            word_to_idx: vocabulary, word -> id; must contain ``<NULL>``. V = number of ids.
            input_dim: D, the width of an image feature vector.
            wordvec_dim: W, the width of a word vector.
            hidden_dim: H, the width of the recurrent state.
            cell_type: ``"rnn"``, ``"lstm"`` or ``"gru"``.
            dtype: float32 to train fast, float64 for gradient checks.
            rng: seed or generator for the initial weights.
            dropout: probability of dropping a unit of the word vectors and of the hidden states before the
                vocabulary projection, while training (a ``loss`` given an ``rng``); 0 turns it off. With
                ``image_input="first_word"`` the projected image, the cell's first input, is dropped like a word.
            image_input: ``"init"`` (the image is the initial hidden state) or ``"first_word"`` (the cell's first
                input, before ``<START>``); see :class:`RNNConfig`.
        """
        settings = RNNConfig(input_dim, wordvec_dim, hidden_dim, cell_type, dropout, image_input)
        self._setup(word_to_idx, dtype, settings)
        self.cell = CELLS[self.cell_type]

        rng = np.random.default_rng(rng)
        D, W, H, V, k = self.input_dim, self.wordvec_dim, self.hidden_dim, self.vocab_size, self.cell.gates
        P = _image_width(settings)
        params = {
            "W_embed": rng.standard_normal((V, W)) / 100,
            "W_proj": rng.standard_normal((D, P)) / np.sqrt(D),
            "b_proj": np.zeros(P),
            "Wx": rng.standard_normal((W, k * H)) / np.sqrt(W),
            "Wh": rng.standard_normal((H, k * H)) / np.sqrt(H),
            "b": np.zeros(k * H),
            "W_vocab": rng.standard_normal((H, V)) / np.sqrt(H),
            "b_vocab": np.zeros(V),
        }
        self.params = {name: value.astype(self.dtype) for name, value in params.items()}

    @classmethod
    def param_shapes(cls, settings: RNNConfig, vocab_size: int) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter of a model of ``settings`` over ``vocab_size`` words, allocating nothing
        (what :meth:`load` checks a file against before it builds anything); the shapes ``__init__`` draws."""
        D, W, H, V = settings.input_dim, settings.wordvec_dim, settings.hidden_dim, vocab_size
        kH, P = CELLS[settings.cell_type].gates * H, _image_width(settings)
        return {
            "W_embed": (V, W),
            "W_proj": (D, P),
            "b_proj": (P,),
            "Wx": (W, kH),
            "Wh": (H, kH),
            "b": (kH,),
            "W_vocab": (H, V),
            "b_vocab": (V,),
        }

    @property
    def feature_shape(self) -> tuple[int]:
        """(D,): one image's pooled feature vector."""
        return (self.input_dim,)

    # ------------------------------------------------------------------ training

    def loss(
        self,
        features: np.ndarray,
        captions: np.ndarray,
        compute_grads: bool = True,
        rng: np.random.Generator | DropoutDraws | None = None,
        caption_weights: np.ndarray | None = None,
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and gradients for a minibatch (teacher forcing), or with ``caption_weights`` the policy-gradient
        surrogate loss of sampled captions (see :meth:`CaptionModel.loss`).

        Args:
            features: (N, D) image features.
            captions: (N, T) integer ids, ``<START> w1 ... <END> <NULL> ...``; T >= 2. The model reads
                ``captions[:, :-1]`` and predicts ``captions[:, 1:]``; ``<NULL>`` targets are ignored.
            compute_grads: False skips the backward pass (validation) and returns no gradients.
            rng: draws the dropout masks; give it while training. Without it (validation) nothing is dropped. A
                :class:`~rnncap.nn.DropoutDraws` draws them for a block of a larger global batch (data-parallel
                training); a generator, for this batch alone.
            caption_weights: (N,) advantages of sampled captions: each caption's log-probability, under the
                sampler's distribution, weighted by its own (self-critical training).

        Returns:
            loss: summed over time steps, averaged over the N captions.
            grads: gradient of every parameter, keyed like ``self.params`` (empty without ``compute_grads``).
        """
        features = self._check_features(features)
        captions = self._check_captions(captions, features.shape[0])
        advantages, excluded = self._policy_weights(caption_weights, features.shape[0])
        # Longest captions first, so that the recurrence runs only the rows still active at each step (packed
        # sequences); the loss and the parameter gradients do not depend on the order of the captions.
        order, lengths = length_order(captions, self.null_id)
        device = self.device
        features, captions = features[to_device(order, device)], captions[order]
        advantages = None if advantages is None else advantages[order]
        p = self.params
        # Time-major (T, N, ...) inside; the layers receive (N, T, ...) transposed views, so nothing is copied.
        ids_in, ids_out, mask = (to_device(a, device) for a in shift_captions(captions, self.null_id))  # (T, N) each
        draws = dropout_draws(rng) if self.dropout > 0 else None
        dropout = self.dropout if draws is not None else 0.0
        # Drawn in this order, words, image, hidden states, each per caption (see time_major_draws).
        T_full, T = captions.shape[1] - 1, ids_in.shape[0]
        words_draws = time_major_draws(draws, order, T_full, T, self.wordvec_dim, device)
        image_draws = None
        if draws is not None and self.image_input == "first_word":
            image_draws = draws.per_caption(len(order), (self.wordvec_dim,))[order]
        h_draws = time_major_draws(draws, order, T_full, T, self.hidden_dim, device)
        x, h0, inputs_cache = self._inputs_forward(features, ids_in, dropout, words_draws, image_draws)
        skip = x.shape[0] - T  # 1 after an image step, whose output predicts nothing
        active = packed_steps(lengths + skip, x.shape[0])
        h, rnn_cache = sequence_forward(self.cell, x.transpose(1, 0, 2), h0, p["Wx"], p["Wh"], p["b"], active)
        h_out = h.transpose(1, 0, 2)[skip:]  # (T, N, H) time-major view
        loss, vocab_cache = vocab_loss_forward(
            h_out, ids_out, mask, p["W_vocab"], p["b_vocab"], dropout, h_draws, advantages, excluded
        )
        if not compute_grads:
            return loss, {}

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = vocab_loss_backward(vocab_cache)  # (T, N, H)
        if skip:
            xp = array_module(dh)
            dh = xp.concatenate([xp.zeros_like(dh[:skip]), dh])  # (S, N, H)
        dx, dh0, grads["Wx"], grads["Wh"], grads["b"] = sequence_backward(self.cell, dh.transpose(1, 0, 2), rnn_cache)
        grads["W_embed"], grads["W_proj"], grads["b_proj"] = self._inputs_backward(
            dx.transpose(1, 0, 2), dh0, inputs_cache
        )
        return loss, grads

    def _inputs_forward(
        self,
        features: np.ndarray,
        ids_in: np.ndarray,
        dropout: float,
        words_draws: np.ndarray | None,
        image_draws: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, tuple]:
        """The cell's inputs and initial hidden state, as ``image_input`` says the image enters.

        Args:
            features: (N, D); ids_in: (T, N) the words read; dropout: as in :meth:`loss`, applied where the
            uniform draws fall below it: ``words_draws`` (T, N, W), ``image_draws`` (N, W) (None: nothing dropped).

        Returns:
            x: (S, N, W) time-major inputs: the T word vectors, after the image's with ``"first_word"`` (S = T + 1);
            h0: (N, H), the projected image or zeros; the cache :meth:`_inputs_backward` takes.
        """
        p = self.params
        image, proj_cache = affine_forward(features, p["W_proj"], p["b_proj"])  # (N, P)
        words, words_cache = embed_words_forward(ids_in, p["W_embed"], dropout, words_draws)  # (T, N, W)
        if self.image_input == "init":
            return words, image, (proj_cache, words_cache, None)
        image, image_drop = (image, None) if image_draws is None else dropout_forward(image, dropout, image_draws)
        xp = array_module(image, words)
        x = xp.concatenate([image[None], words])  # (T + 1, N, W)
        return x, xp.zeros((len(features), self.hidden_dim), dtype=x.dtype), (proj_cache, words_cache, image_drop)

    def _inputs_backward(
        self, dx: np.ndarray, dh0: np.ndarray, cache: tuple
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gradients of :meth:`_inputs_forward`: dx (S, N, W) time-major and dh0 (N, H) -> dW_embed, dW_proj,
        db_proj."""
        proj_cache, words_cache, image_drop = cache
        if self.image_input == "init":
            dimage, dwords = dh0, dx
        else:  # h0 is a constant zero: its gradient goes nowhere
            dimage, dwords = dropout_backward(dx[0], image_drop), dx[1:]
        _, dW_proj, db_proj = affine_backward(dimage, proj_cache)
        return embed_words_backward(dwords, words_cache), dW_proj, db_proj

    # ------------------------------------------------------------------ decoding

    def init_state(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """The recurrent state before ``<START>``: ``(h,)``, or ``(h, c)`` for the LSTM; each (N, H).

        ``image_input="init"``: h is the projected image and c zero; ``"first_word"``: the state after the cell
        has read the projected image from zeros.
        """
        features = self._check_features(features)
        image, _ = affine_forward(features, self.params["W_proj"], self.params["b_proj"])  # (N, P)
        xp = array_module(image)
        if self.image_input == "init":
            return (image, xp.zeros_like(image)) if self.cell.has_cell_state else (image,)
        zeros = xp.zeros((len(features), self.hidden_dim), dtype=image.dtype)
        return self._advance((zeros, zeros) if self.cell.has_cell_state else (zeros,), image)

    def step(self, state: tuple[np.ndarray, ...], word_ids: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Feed one word per caption.

        Args:
            state: from :meth:`init_state` or the previous step.
            word_ids: (N,) ids of the previous words (host or the model's device).

        Returns:
            log_probs: (N, V) log-probabilities of the next word; the next state.
        """
        p = self.params
        word_ids = to_device(word_ids, self.device)
        next_state = self._advance(state, p["W_embed"][word_ids])  # (N, W) word vectors in
        scores, _ = affine_forward(next_state[0], p["W_vocab"], p["b_vocab"])  # (N, V)
        return log_softmax(scores), next_state

    def _advance(self, state: tuple[np.ndarray, ...], x: np.ndarray) -> tuple[np.ndarray, ...]:
        """One step of the cell on (N, W) inputs ``x``: the next state, shaped like ``state``."""
        p = self.params
        prev_c = state[1] if self.cell.has_cell_state else None
        next_h, next_c, _ = step_forward(self.cell, x, state[0], prev_c, p["Wx"], p["Wh"], p["b"])
        return (next_h,) if next_c is None else (next_h, next_c)


def _image_width(settings: RNNConfig) -> int:
    """P, the width of the projected image: H as the initial state, W as the first input."""
    return settings.hidden_dim if settings.image_input == "init" else settings.wordvec_dim
