"""AttentionCaptioner: "Show, Attend and Tell" (Xu et al. 2015) with soft attention, in NumPy.

The CNN's grid of L feature vectors (N, L, D) replaces the single pooled vector of :class:`CaptioningRNN`. Training
runs ``mean_l features --W_init_h, W_init_c, tanh--> h0, c0`` (the paper's initial states, as its code computes
them), ``features --W_feat--> feat_proj`` once per batch, then at every step soft attention with ``h_{t-1}``, the
gated context ``beta * z_t`` beside the word vector as the LSTM's input, ``h_t --W_vocab--> scores``, and the loss
``masked softmax cross-entropy + alpha_reg * sum_l (1 - sum_t alpha_tl)^2``, both per caption, averaged over N.
See :mod:`rnncap.nn.attention` for the layers.

The grid size L is part of the configuration (the encoder fixes it: 81 = 9 x 9 for EfficientNet-Lite2), so every
image has every location and the model needs no location mask; the layers accept one for grids of mixed sizes.
"""

from __future__ import annotations

import numpy as np

from rnncap.backend import array_module, to_device
from rnncap.models.base import CaptionModel
from rnncap.models.config import AttentionConfig
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
    DropoutDraws,
    affine_backward,
    affine_forward,
    attend,
    attention_gate_forward,
    attention_lstm_backward,
    attention_lstm_forward,
    doubly_stochastic_loss,
    dropout_draws,
    log_softmax,
    lstm_step_forward,
)

# The caches of the two initial-state affine maps, then h0, c0 (N, H) and the features as (N*L, D).
_GridCache = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray, np.ndarray]


class AttentionCaptioner(CaptionModel):
    """A soft-attention LSTM captioner over a grid of image features.

    Parameters (``self.params``): ``W_init_h``, ``W_init_c`` (D, H) and ``b_init_h``, ``b_init_c`` (H,): initial
    states; ``W_feat`` (D, A), ``b_feat`` (A,): grid projection; ``W_h_att`` (H, A), ``w_att`` (A,): scores;
    ``W_beta`` (H, 1), ``b_beta`` (1,): gate; ``W_embed`` (V, W); ``Wx`` (W + D, 4H) (word rows, then context
    rows), ``Wh`` (H, 4H), ``b`` (4H,): the LSTM (gates i, f, o, g); ``W_vocab`` (H, V), ``b_vocab`` (V,).

    It offers what :class:`CaptioningRNN` offers (``loss``, ``sample``, ``beam_search``, ``init_state``/``step``
    for :mod:`rnncap.decode`, ``save``/``load``, ``config``, ``metadata``); ``sample`` and ``beam_search`` can
    also return the attention weights of every generated word.
    """

    settings_class = AttentionConfig
    input_dim: int
    num_locations: int
    wordvec_dim: int
    hidden_dim: int
    attention_dim: int
    alpha_reg: float

    def __init__(
        self,
        word_to_idx: dict[str, int],
        input_dim: int = AttentionConfig.input_dim,
        num_locations: int = AttentionConfig.num_locations,
        wordvec_dim: int = AttentionConfig.wordvec_dim,
        hidden_dim: int = AttentionConfig.hidden_dim,
        attention_dim: int = AttentionConfig.attention_dim,
        alpha_reg: float = AttentionConfig.alpha_reg,
        dtype: np.dtype | type | str = np.float32,
        rng: np.random.Generator | int | None = 0,
        dropout: float = AttentionConfig.dropout,
    ) -> None:
        """Build a model with random weights (scaled by 1 / sqrt(fan-in), biases zero, as CaptioningRNN's); the
        defaults are :class:`AttentionConfig`'s.

        Args:
            word_to_idx: vocabulary, word -> id; must contain ``<NULL>``. V = number of ids.
            input_dim: D, the channels of a grid location.
            num_locations: L, the locations of a grid (81 for a 9 x 9 grid).
            wordvec_dim: W; hidden_dim: H; attention_dim: A, the width of the additive attention.
            alpha_reg: lambda, the weight of the doubly stochastic regulariser (the paper's 1.0; 0 turns it off).
            dtype: float32 to train fast, float64 for gradient checks.
            rng: seed or generator for the initial weights.
            dropout: probability of dropping a unit of the word vectors and of the hidden states before the
                vocabulary projection, while training (a ``loss`` given an ``rng``); 0 turns it off.
        """
        settings = AttentionConfig(input_dim, num_locations, wordvec_dim, hidden_dim, attention_dim, alpha_reg, dropout)
        self._setup(word_to_idx, dtype, settings)

        rng = np.random.default_rng(rng)
        D, W, H, A, V = self.input_dim, self.wordvec_dim, self.hidden_dim, self.attention_dim, self.vocab_size
        params = {
            "W_init_h": rng.standard_normal((D, H)) / np.sqrt(D),
            "b_init_h": np.zeros(H),
            "W_init_c": rng.standard_normal((D, H)) / np.sqrt(D),
            "b_init_c": np.zeros(H),
            "W_feat": rng.standard_normal((D, A)) / np.sqrt(D),
            "b_feat": np.zeros(A),
            "W_h_att": rng.standard_normal((H, A)) / np.sqrt(H),
            "w_att": rng.standard_normal(A) / np.sqrt(A),
            "W_beta": rng.standard_normal((H, 1)) / np.sqrt(H),
            "b_beta": np.zeros(1),
            "W_embed": rng.standard_normal((V, W)) / 100,
            "Wx": rng.standard_normal((W + D, 4 * H)) / np.sqrt(W + D),
            "Wh": rng.standard_normal((H, 4 * H)) / np.sqrt(H),
            "b": np.zeros(4 * H),
            "W_vocab": rng.standard_normal((H, V)) / np.sqrt(H),
            "b_vocab": np.zeros(V),
        }
        self.params = {name: value.astype(self.dtype) for name, value in params.items()}

    attends = True

    @classmethod
    def param_shapes(cls, settings: AttentionConfig, vocab_size: int) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter of a model of ``settings`` over ``vocab_size`` words, allocating nothing
        (what :meth:`load` checks a file against before it builds anything); the shapes ``__init__`` draws."""
        D, W, H, A = settings.input_dim, settings.wordvec_dim, settings.hidden_dim, settings.attention_dim
        V = vocab_size
        return {
            "W_init_h": (D, H),
            "b_init_h": (H,),
            "W_init_c": (D, H),
            "b_init_c": (H,),
            "W_feat": (D, A),
            "b_feat": (A,),
            "W_h_att": (H, A),
            "w_att": (A,),
            "W_beta": (H, 1),
            "b_beta": (1,),
            "W_embed": (V, W),
            "Wx": (W + D, 4 * H),
            "Wh": (H, 4 * H),
            "b": (4 * H,),
            "W_vocab": (H, V),
            "b_vocab": (V,),
        }

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(L, D): the shape of one image's features."""
        return self.num_locations, self.input_dim

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
        surrogate loss of sampled captions (see :meth:`CaptionModel.loss`; then without the regulariser).

        Args:
            features: (N, L, D) grid features (any float dtype; cast to the model's).
            captions: (N, T) integer ids, ``<START> w1 ... <END> <NULL> ...``; T >= 2. The model reads
                ``captions[:, :-1]`` and predicts ``captions[:, 1:]``; ``<NULL>`` targets are ignored.
            compute_grads: False skips the backward pass (validation) and returns no gradients.
            rng: draws the dropout masks; give it while training. Without it (validation) nothing is dropped. A
                :class:`~rnncap.nn.DropoutDraws` draws them for a block of a larger global batch (data-parallel
                training); a generator, for this batch alone.
            caption_weights: (N,) advantages of sampled captions: the loss becomes
                ``-sum_n caption_weights[n] * sum_t log q(w_t) / N`` with q the sampler's distribution
                (:func:`rnncap.sampling.sample_captions`), and the doubly stochastic regulariser is left out (the
                reward alone shapes the fine-tuning, as in self-critical.pytorch).

        Returns:
            loss: cross-entropy summed over time steps plus ``alpha_reg`` times the regulariser, averaged over
                the N captions.
            grads: gradient of every parameter, keyed like ``self.params`` (empty without ``compute_grads``).
        """
        features = self._check_features(features)
        captions = self._check_captions(captions, features.shape[0])
        advantages, excluded = self._policy_weights(caption_weights, features.shape[0])
        # Longest captions first, so that the decoder runs only the rows still active at each step (packed
        # sequences); the loss and the parameter gradients do not depend on the order of the captions.
        order, lengths = length_order(captions, self.null_id)
        device = self.device
        features, captions = features[to_device(order, device)], captions[order]
        advantages = None if advantages is None else advantages[order]
        p = self.params
        ids_in, ids_out, mask = (to_device(a, device) for a in shift_captions(captions, self.null_id))  # (T, N) each

        h0, c0, feat_proj, grid_cache = self._read_grid(features)
        draws = dropout_draws(rng) if self.dropout > 0 else None
        dropout = self.dropout if draws is not None else 0.0
        # Drawn in this order, words then hidden states, each per caption (see time_major_draws).
        T_full, T = captions.shape[1] - 1, ids_in.shape[0]
        words_draws = time_major_draws(draws, order, T_full, T, self.wordvec_dim, device)
        h_draws = time_major_draws(draws, order, T_full, T, self.hidden_dim, device)
        x, words_cache = embed_words_forward(ids_in, p["W_embed"], dropout, words_draws)  # (T, N, W)
        # The decoder's weights by keyword: each parameter is named as the layer's argument it is passed to.
        weights = {name: p[name] for name in ("Wx", "Wh", "b", "W_h_att", "w_att", "W_beta", "b_beta")}
        active = packed_steps(lengths, x.shape[0])
        h, alpha, decoder_cache = attention_lstm_forward(
            x.transpose(1, 0, 2), features, feat_proj, h0, c0, **weights, active=active
        )
        # h (N, T, H), alpha (N, T, L): views of time-major arrays

        loss, vocab_cache = vocab_loss_forward(
            h.transpose(1, 0, 2), ids_out, mask, p["W_vocab"], p["b_vocab"], dropout, h_draws, advantages, excluded
        )
        dalpha = None
        if advantages is None:
            reg_loss, dalpha = doubly_stochastic_loss(alpha, mask.T, self.alpha_reg)
            loss += reg_loss
        if not compute_grads:
            return loss, {}

        grads = {}
        dh, grads["W_vocab"], grads["b_vocab"] = vocab_loss_backward(vocab_cache)  # (T, N, H)
        # The encoder is frozen: gradients stop at the parameters, the features need none.
        decoder = attention_lstm_backward(dh.transpose(1, 0, 2), dalpha, decoder_cache, features_grad=False)
        grads["Wx"], grads["Wh"], grads["b"] = decoder.dWx, decoder.dWh, decoder.db
        grads["W_h_att"], grads["w_att"] = decoder.dW_h_att, decoder.dw_att
        grads["W_beta"], grads["b_beta"] = decoder.dW_beta, decoder.db_beta
        grads["W_embed"] = embed_words_backward(decoder.dx.transpose(1, 0, 2), words_cache)
        grads.update(_read_grid_backward(decoder.dh0, decoder.dc0, decoder.dfeat_proj, grid_cache))
        return loss, grads

    def _read_grid(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, _GridCache]:
        """What the decoder starts from: the initial states ``h0 = tanh(mean_l features W_init_h + b_init_h)``, ``c0``
        likewise, (N, H) each, and the grid's projection ``feat_proj`` (N, L, A), once per batch, read by every step;
        with a cache for :func:`_read_grid_backward`."""
        p = self.params
        N, L, D = features.shape
        mean_features = features.mean(axis=1)  # (N, D)
        h0, init_h_cache = affine_forward(mean_features, p["W_init_h"], p["b_init_h"])
        c0, init_c_cache = affine_forward(mean_features, p["W_init_c"], p["b_init_c"])
        xp = array_module(h0)
        xp.tanh(h0, out=h0)
        xp.tanh(c0, out=c0)
        features_flat = features.reshape(N * L, D)
        feat_proj = (features_flat @ p["W_feat"]).reshape(N, L, -1)  # (N, L, A), one GEMM
        feat_proj += p["b_feat"]
        return h0, c0, feat_proj, (init_h_cache, init_c_cache, h0, c0, features_flat)

    # ------------------------------------------------------------------ decoding

    def init_state(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """The state before the first word: ``(h0, c0, alpha, features, feat_proj)``.

        ``h0``, ``c0`` (N, H) and ``alpha`` (N, L) (zeros: no word attended yet) have one row per hypothesis;
        ``features`` (N, L, D) and ``feat_proj`` (N, L, A) one per image, shared by its hypotheses (see
        :meth:`select_state`).
        """
        features = self._check_features(features)
        h0, c0, feat_proj, _ = self._read_grid(features)
        alpha = array_module(features).zeros(features.shape[:2], dtype=self.dtype)
        return h0, c0, alpha, features, feat_proj

    def select_state(self, state: tuple[np.ndarray, ...], rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """The state of hypotheses ``rows`` (see :mod:`rnncap.decode`): per-hypothesis arrays are indexed, the
        per-image features stay as they are (the decoder keeps each image's hypotheses together)."""
        h, c, alpha, features, feat_proj = state
        return h[rows], c[rows], alpha[rows], features, feat_proj

    def step(self, state: tuple[np.ndarray, ...], word_ids: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Feed one word per hypothesis.

        Args:
            state: from :meth:`init_state`, :meth:`select_state` or the previous step; hypotheses of image n
                are rows ``n*B .. n*B + B - 1`` (B = rows / images).
            word_ids: (N*B,) ids of the previous words.

        Returns:
            log_probs: (N*B, V) log-probabilities of the next word; the next state, whose ``alpha`` (N*B, L) holds
            the attention weights this step used.
        """
        p = self.params
        word_ids = to_device(word_ids, self.device)
        prev_h, prev_c, _, features, feat_proj = state
        N, L = features.shape[:2]
        B = prev_h.shape[0] // N
        hA = (prev_h @ p["W_h_att"]).reshape(N, B, -1)  # (N, B, A)
        context, alpha = attend(features, feat_proj, hA, p["w_att"])  # (N, B, D), (N, B, L): no copy per beam
        gated, _ = attention_gate_forward(context.reshape(N * B, -1), prev_h, p["W_beta"], p["b_beta"])
        x = array_module(gated).concatenate([p["W_embed"][word_ids], gated], axis=1)  # (N*B, W + D)
        next_h, next_c, _ = lstm_step_forward(x, prev_h, prev_c, p["Wx"], p["Wh"], p["b"])
        scores, _ = affine_forward(next_h, p["W_vocab"], p["b_vocab"])  # (N*B, V)
        return log_softmax(scores), (next_h, next_c, alpha.reshape(N * B, L), features, feat_proj)

    def attention_weights(self, state: tuple[np.ndarray, ...]) -> np.ndarray:
        """(N, L) attention weights of the step that returned ``state``."""
        return state[2]


def _read_grid_backward(
    dh0: np.ndarray, dc0: np.ndarray, dfeat_proj: np.ndarray, cache: _GridCache
) -> dict[str, np.ndarray]:
    """Backward of :meth:`AttentionCaptioner._read_grid` to its parameters (the frozen features need no gradient):
    dh0, dc0 (N, H) (overwritten) and dfeat_proj (N, L, A) -> gradients of W_feat, b_feat, W_init_h, b_init_h,
    W_init_c, b_init_c."""
    init_h_cache, init_c_cache, h0, c0, features_flat = cache
    dfeat_proj_flat = dfeat_proj.reshape(features_flat.shape[0], -1)  # (N*L, A)
    grads = {"W_feat": features_flat.T @ dfeat_proj_flat, "b_feat": dfeat_proj_flat.sum(axis=0)}
    dh0 *= 1 - h0 * h0  # through tanh
    dc0 *= 1 - c0 * c0
    _, grads["W_init_h"], grads["b_init_h"] = affine_backward(dh0, init_h_cache)
    _, grads["W_init_c"], grads["b_init_c"] = affine_backward(dc0, init_c_cache)
    return grads
