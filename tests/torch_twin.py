"""The PyTorch twin of ``rnncap.CaptioningRNN``: the same model written the way a PyTorch user would write it.

Built only from torch's standard modules (``nn.Linear``, ``nn.Embedding``, ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``
with ``batch_first=True``, ``F.cross_entropy``), so that the parity tests compare our hand-written NumPy
forward and backward passes against autograd, and the benchmark compares our engine against torch's CPU kernels.
It lives beside the tests and the benchmark, not in the library: the library never imports torch.

Weight mapping (ours -> torch; every matrix is transposed because torch stores ``weight`` as (out, in)):

=========================  ===============================================================================
ours                       torch
=========================  ===============================================================================
``W_proj`` (D, H)          ``proj.weight`` (H, D) = ``W_proj.T``; ``b_proj`` -> ``proj.bias``
``W_embed`` (V, W)         ``embed.weight`` (V, W), as is
``Wx`` (W, kH)             ``rnn.weight_ih_l0`` (kH, W) = ``Wx.T`` with the gate blocks reordered
``Wh`` (H, kH)             ``rnn.weight_hh_l0`` (kH, H) = ``Wh.T`` with the gate blocks reordered
``b`` (kH,)                ``rnn.bias_ih_l0`` = ``b`` reordered; ``rnn.bias_hh_l0`` = 0, frozen
``W_vocab`` (H, V)         ``vocab.weight`` (V, H) = ``W_vocab.T``; ``b_vocab`` -> ``vocab.bias``
=========================  ===============================================================================

With ``image_input="first_word"`` (Show and Tell) ``proj`` maps the image to a word vector's width (``W_proj``
is (D, W)), the image is the recurrent module's first input, before the embedded ``<START>``, from torch's default
zero state, and the scores of its output are dropped.

Gate blocks: our LSTM uses CS231n's order (i, f, o, g), torch's is (i, f, g, o): the last two blocks swap, and
the swap is its own inverse. The GRU already uses torch's order (r, z, n); the RNN has one block.

Why ``bias_hh`` is frozen at zero rather than trained: our cells have one bias. For the RNN and the LSTM torch
adds ``bias_ih + bias_hh`` to the same pre-activation, so any trained pair maps to ``b = bias_ih + bias_hh``
(:func:`numpy_params_from_twin`), but the two gradients are *each* equal to our ``db``, not halves of it. For the
GRU the hidden bias of the candidate block sits inside ``r * (h W_hn + b_hn)`` and has no counterpart at all.
Holding ``bias_hh`` at zero with ``requires_grad=False`` makes the twin exactly our model, its gradients exactly
ours (``db = bias_ih.grad``), and keeps an optimiser from moving a parameter our model lacks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)
from torch import nn

NULL_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _recurrent_module(cell_type: str, W: int, H: int) -> nn.Module:
    if cell_type == "rnn":
        return nn.RNN(W, H, nonlinearity="tanh", batch_first=True)
    if cell_type == "lstm":
        return nn.LSTM(W, H, batch_first=True)
    if cell_type == "gru":
        return nn.GRU(W, H, batch_first=True)
    raise ValueError(f"cell_type must be one of {sorted(GATES)}, got {cell_type!r}")


def gate_order(cell_type: str, H: int) -> np.ndarray:
    """Column permutation between our gate layout and torch's, (kH,) indices; it is its own inverse.

    ``ours[..., gate_order(...)]`` is torch's layout and ``torchs[..., gate_order(...)]`` is ours.
    """
    blocks = {"rnn": [0], "lstm": [0, 1, 3, 2], "gru": [0, 1, 2]}[cell_type]  # lstm: (i, f, o, g) <-> (i, f, g, o)
    return np.concatenate([np.arange(blk * H, (blk + 1) * H) for blk in blocks])


class TorchCaptioner(nn.Module):
    """features (N, D) -> h0 (or the first input) -> RNN/LSTM/GRU over the embedded caption -> vocabulary scores ->
    masked loss."""

    def __init__(
        self,
        input_dim: int,
        wordvec_dim: int,
        hidden_dim: int,
        vocab_size: int,
        cell_type: str = "lstm",
        dtype: torch.dtype = torch.float32,
        image_input: str = "init",
    ) -> None:
        super().__init__()
        if image_input not in ("init", "first_word"):
            raise ValueError(f"image_input must be 'init' or 'first_word', got {image_input!r}")
        self.cell_type = cell_type
        self.image_input = image_input
        self.hidden_dim = hidden_dim
        self.vocab_size = vocab_size
        self.proj = nn.Linear(input_dim, hidden_dim if image_input == "init" else wordvec_dim)
        self.embed = nn.Embedding(vocab_size, wordvec_dim)
        self.rnn = _recurrent_module(cell_type, wordvec_dim, hidden_dim)
        self.vocab = nn.Linear(hidden_dim, vocab_size)
        with torch.no_grad():
            self.rnn.bias_hh_l0.zero_()
        self.rnn.bias_hh_l0.requires_grad_(False)  # see the module docstring
        self.to(dtype)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The state before ``<START>`` as torch's recurrent modules take it: ``h0`` (1, N, H), or ``(h0, c0)``
        for the LSTM; with ``image_input="first_word"`` the state after reading the image from zeros."""
        if self.image_input == "first_word":
            _, state = self.rnn(self.proj(features)[:, None, :])  # (N, 1, W) in, from torch's zero state
            return state
        h0 = self.proj(features).unsqueeze(0)  # (1, N, H)
        return (h0, torch.zeros_like(h0)) if self.cell_type == "lstm" else h0

    def hidden_states(self, features: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(N, T, H) hidden states after each of the (N, T) input words."""
        x = self.embed(inputs)  # (N, T, W)
        if self.image_input == "first_word":
            x = torch.cat([self.proj(features)[:, None, :], x], dim=1)  # (N, T + 1, W): the image first
            return self.rnn(x)[0][:, 1:]  # the image step's output predicts nothing
        return self.rnn(x, self.init_state(features))[0]

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Loss of a minibatch: ``features`` (N, D), ``captions`` (N, T+1) int64; summed over words, / N."""
        N = features.shape[0]
        h = self.hidden_states(features, captions[:, :-1])  # (N, T, H)
        scores = self.vocab(h)  # (N, T, V)
        targets = captions[:, 1:]
        return (
            F.cross_entropy(
                scores.reshape(-1, self.vocab_size), targets.reshape(-1), reduction="sum", ignore_index=NULL_ID
            )
            / N
        )

    @torch.no_grad()
    def step(self, state, words: torch.Tensor):
        """One decoding step: ``words`` (N,) -> (N, V) log-probabilities and the next state."""
        h, state = self.rnn(self.embed(words)[:, None, :], state)  # (N, 1, H)
        return F.log_softmax(self.vocab(h[:, 0]), dim=1), state


def from_numpy_params(
    params: dict[str, np.ndarray], cell_type: str, dtype: torch.dtype = torch.float32, image_input: str = "init"
) -> TorchCaptioner:
    """A twin holding ``params`` (our names and layouts, see the module docstring)."""
    D, H = params["W_proj"].shape[0], params["Wh"].shape[0]
    V, W = params["W_embed"].shape
    twin = TorchCaptioner(D, W, H, V, cell_type, dtype, image_input)
    load_numpy_params(twin, params)
    return twin


def load_numpy_params(twin: TorchCaptioner, params: dict[str, np.ndarray]) -> None:
    """Copy our parameters into ``twin``, in place, casting to the twin's dtype."""
    H = twin.hidden_dim
    order = gate_order(twin.cell_type, H)
    k = GATES[twin.cell_type]
    if params["Wh"].shape != (H, k * H):
        raise ValueError(f"Wh has shape {params['Wh'].shape}, a {twin.cell_type} twin expects {(H, k * H)}")
    targets = {
        twin.proj.weight: params["W_proj"].T,
        twin.proj.bias: params["b_proj"],
        twin.embed.weight: params["W_embed"],
        twin.rnn.weight_ih_l0: params["Wx"][:, order].T,
        twin.rnn.weight_hh_l0: params["Wh"][:, order].T,
        twin.rnn.bias_ih_l0: params["b"][order],
        twin.rnn.bias_hh_l0: np.zeros_like(params["b"]),
        twin.vocab.weight: params["W_vocab"].T,
        twin.vocab.bias: params["b_vocab"],
    }
    copy_into(targets)


def policy_loss(scores: torch.Tensor, captions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The self-critical surrogate loss, as a PyTorch user writes it: ``-sum_n weights[n] * sum_t log q(w_t) / N``
    over the (N, T+1) sampled ``captions`` (``<START>`` first, targets ``captions[:, 1:]``, ``<NULL>`` ignored), where
    q is the softmax of the (N, T, V) ``scores`` without ``<NULL>``, ``<START>`` and ``<UNK>`` (never sampled)."""
    never = torch.zeros(scores.shape[-1], dtype=torch.bool)
    never[[NULL_ID, START_ID, UNK_ID]] = True
    log_q = F.log_softmax(scores.masked_fill(never, -torch.inf), dim=-1)
    targets = captions[:, 1:]
    picked = log_q.gather(2, targets.unsqueeze(2)).squeeze(2)  # (N, T)
    picked = torch.where(targets != NULL_ID, picked, torch.zeros_like(picked))
    return -(weights.unsqueeze(1) * picked).sum() / captions.shape[0]


def policy_forward(twin: TorchCaptioner, features: torch.Tensor, captions: torch.Tensor, weights: torch.Tensor):
    """:func:`policy_loss` of a :class:`TorchCaptioner` on sampled captions."""
    return policy_loss(twin.vocab(twin.hidden_states(features, captions[:, :-1])), captions, weights)


def copy_into(targets: dict[torch.Tensor, np.ndarray]) -> None:
    """Copy each array into its tensor, in place (casting to the tensor's dtype), refusing other shapes."""
    with torch.no_grad():
        for tensor, value in targets.items():
            if tuple(tensor.shape) != value.shape:
                raise ValueError(f"cannot load an array of shape {value.shape} into a tensor of shape {tensor.shape}")
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def require_grads(twin: nn.Module) -> None:
    """Refuse to read gradients before ``loss.backward()`` has left them in every trainable parameter."""
    for name, p in twin.named_parameters():
        if p.requires_grad and p.grad is None:
            raise ValueError(f"{name} has no gradient: run loss.backward() first")


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _as_ours(twin: TorchCaptioner, get) -> dict[str, np.ndarray]:
    """Read (per-tensor ``get``) torch's tensors back into our names and layouts."""
    order = gate_order(twin.cell_type, twin.hidden_dim)
    return {
        "W_proj": get(twin.proj.weight).T,
        "b_proj": get(twin.proj.bias),
        "W_embed": get(twin.embed.weight),
        "Wx": get(twin.rnn.weight_ih_l0).T[:, order],
        "Wh": get(twin.rnn.weight_hh_l0).T[:, order],
        "b": get(twin.rnn.bias_ih_l0)[order],
        "W_vocab": get(twin.vocab.weight).T,
        "b_vocab": get(twin.vocab.bias),
    }


def grads_as_numpy(twin: TorchCaptioner) -> dict[str, np.ndarray]:
    """The gradients autograd left in ``.grad``, under our names and in our layouts.

    ``b`` is ``bias_ih.grad`` alone: ``bias_hh`` is a frozen zero, not a parameter of our model (adding its
    gradient would double ``db`` for the RNN and the LSTM, whose two bias gradients are equal).
    """
    require_grads(twin)
    return _as_ours(twin, lambda t: _to_numpy(t.grad))


def numpy_params_from_twin(twin: TorchCaptioner) -> dict[str, np.ndarray]:
    """The twin's weights under our names; ``b = bias_ih + bias_hh`` (exact for the RNN and the LSTM).

    Raises:
        ValueError: a GRU whose candidate-gate ``bias_hh`` is not zero (our GRU has no such parameter).
    """
    params = _as_ours(twin, _to_numpy)
    H = twin.hidden_dim
    bias_hh = _to_numpy(twin.rnn.bias_hh_l0)
    if twin.cell_type == "gru" and np.any(bias_hh[2 * H :] != 0):
        raise ValueError("a GRU with a non-zero hidden bias of the candidate gate has no rnncap equivalent")
    params["b"] = params["b"] + bias_hh[gate_order(twin.cell_type, H)]
    return params


def _forbid_special_tokens(log_probs: torch.Tensor) -> torch.Tensor:
    log_probs[:, [NULL_ID, START_ID, UNK_ID]] = -torch.inf  # as rnncap.decode, for vocabularies with <UNK>
    return log_probs


@torch.no_grad()
def sample(twin: TorchCaptioner, features: torch.Tensor, max_length: int = 30) -> np.ndarray:
    """Greedy captions with rnncap's rules: (N, D) -> (N, max_length) int32 ids.

    Starts from ``<START>``, never emits ``<NULL>`` or ``<START>``, writes ``<NULL>`` after ``<END>`` and stops
    once every caption has ended.
    """
    state = twin.init_state(features)
    N = features.shape[0]
    on = features.device  # the twin's own device: a GPU for the benchmark's --device cuda
    captions = torch.full((N, max_length), NULL_ID, dtype=torch.int64, device=on)
    words = torch.full((N,), START_ID, dtype=torch.int64, device=on)
    finished = torch.zeros(N, dtype=torch.bool, device=on)
    for t in range(max_length):
        log_probs, state = twin.step(state, words)
        words = _forbid_special_tokens(log_probs).argmax(dim=1)
        captions[:, t] = torch.where(finished, NULL_ID, words)
        finished |= words == END_ID
        if finished.all():
            break
    return captions.cpu().numpy().astype(np.int32)


@torch.no_grad()
def beam_search(twin: TorchCaptioner, features: torch.Tensor, beam_size: int = 3, max_length: int = 30) -> np.ndarray:
    """Beam search with rnncap's rules (``length_penalty=0``: hypotheses ranked by total log-probability).

    A hypothesis that emits ``<END>`` is finished and keeps its score, continuing with ``<NULL>`` at no cost;
    the search stops when every beam has finished or at ``max_length``. Returns (N, max_length) int32 ids.
    """
    B, V = beam_size, twin.vocab_size
    state = twin.init_state(features)
    N = features.shape[0]
    if isinstance(state, tuple):
        state = tuple(s.repeat_interleave(B, dim=1) for s in state)  # (1, N*B, H): beam b of image n at n*B + b
    else:
        state = state.repeat_interleave(B, dim=1)
    on = features.device
    tokens = torch.full((N, B, max_length), NULL_ID, dtype=torch.int64, device=on)
    scores = torch.zeros(N, B, dtype=torch.float64, device=on)
    scores[:, 1:] = -torch.inf  # all beams start identical: only the first may expand at step 0
    finished = torch.zeros(N, B, dtype=torch.bool, device=on)
    words = torch.full((N * B,), START_ID, dtype=torch.int64, device=on)
    for t in range(max_length):
        log_probs, state = twin.step(state, words)
        log_probs = _forbid_special_tokens(log_probs.double()).reshape(N, B, V)
        log_probs[finished] = -torch.inf
        log_probs[..., NULL_ID] = torch.where(finished, 0.0, log_probs[..., NULL_ID])
        candidate = (scores[:, :, None] + log_probs).reshape(N, B * V)
        scores, best = candidate.topk(B, dim=1)  # (N, B), sorted best first
        parent, words_nb = best // V, best % V
        was_finished = finished.gather(1, parent)
        finished = was_finished | (words_nb == END_ID)
        tokens = tokens.gather(1, parent[:, :, None].expand(N, B, max_length)).clone()
        tokens[:, :, t] = torch.where(was_finished, NULL_ID, words_nb)
        rows = (parent + torch.arange(N, device=on)[:, None] * B).reshape(-1)  # (N*B,) rows of the surviving parents
        state = tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]
        words = words_nb.reshape(-1)
        if finished.all():
            break
    return tokens[torch.arange(N, device=on), scores.argmax(dim=1)].cpu().numpy().astype(np.int32)
