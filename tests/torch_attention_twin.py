"""The PyTorch twin of ``rnncap.models.AttentionCaptioner``: "Show, Attend and Tell" written the way a PyTorch user
would write it, from ``nn.Linear``, ``nn.Embedding``, ``nn.LSTMCell`` in a Python loop over time, ``F.softmax``,
``torch.bmm`` and ``F.cross_entropy``; autograd does the backward pass.

The parity tests compare our hand-written forward and backward passes against it, and the benchmark compares our
engine against torch's CPU kernels. The library never imports torch.

Weight mapping (ours -> torch; matrices are transposed because torch stores ``weight`` as (out, in)):

=========================  ===============================================================================
ours                       torch
=========================  ===============================================================================
``W_init_h``, ``b_init_h``  ``init_h.weight`` = ``W_init_h.T``, ``init_h.bias`` (and ``init_c`` alike)
``W_feat``, ``b_feat``      ``feat_proj.weight`` = ``W_feat.T``, ``feat_proj.bias``
``W_h_att`` (H, A)          ``h_att.weight`` (A, H), no bias (``b_feat`` already shifts every score input)
``w_att`` (A,)              ``score.weight`` (1, A), no bias (a constant score cancels in the softmax)
``W_beta`` (H, 1), ``b_beta``  ``beta.weight`` (1, H), ``beta.bias``
``W_embed`` (V, W)          ``embed.weight``, as is
``Wx`` (W + D, 4H)          ``lstm.weight_ih`` (4H, W + D) = ``Wx.T`` with the gate blocks reordered
``Wh`` (H, 4H), ``b``       ``lstm.weight_hh``, ``lstm.bias_ih`` reordered; ``lstm.bias_hh`` = 0, frozen
``W_vocab``, ``b_vocab``    ``vocab.weight`` = ``W_vocab.T``, ``vocab.bias``
=========================  ===============================================================================

Gate order and the frozen ``bias_hh``: as in ``torch_twin.py`` (our LSTM is (i, f, o, g), torch's (i, f, g, o)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch idiom)
from torch import nn

from torch_twin import END_ID, NULL_ID, START_ID, UNK_ID, copy_into, gate_order, policy_loss, require_grads


class TorchAttentionCaptioner(nn.Module):
    """Grid features (N, L, D) -> soft-attention LSTM -> vocabulary scores -> masked loss + regulariser."""

    def __init__(
        self,
        input_dim: int,
        wordvec_dim: int,
        hidden_dim: int,
        attention_dim: int,
        vocab_size: int,
        alpha_reg: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        D, W, H, A, V = input_dim, wordvec_dim, hidden_dim, attention_dim, vocab_size
        self.hidden_dim, self.vocab_size, self.alpha_reg = H, V, alpha_reg
        self.init_h = nn.Linear(D, H)
        self.init_c = nn.Linear(D, H)
        self.feat_proj = nn.Linear(D, A)
        self.h_att = nn.Linear(H, A, bias=False)
        self.score = nn.Linear(A, 1, bias=False)
        self.beta = nn.Linear(H, 1)
        self.embed = nn.Embedding(V, W)
        self.lstm = nn.LSTMCell(W + D, H)
        self.vocab = nn.Linear(H, V)
        with torch.no_grad():
            self.lstm.bias_hh.zero_()
        self.lstm.bias_hh.requires_grad_(False)  # see torch_twin.py
        self.to(dtype)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h0, c0 (N, H) from the mean grid feature, and the projected grid (N, L, A)."""
        mean = features.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean)), self.feat_proj(features)

    def attend_and_step(self, features, proj, x, h, c):
        """One decoder step: attention weights (N, L) and the next (h, c)."""
        e = self.score(torch.tanh(proj + self.h_att(h).unsqueeze(1))).squeeze(2)  # (N, L)
        alpha = F.softmax(e, dim=1)
        context = torch.bmm(alpha.unsqueeze(1), features).squeeze(1)  # (N, D)
        gate = torch.sigmoid(self.beta(h))  # (N, 1)
        h, c = self.lstm(torch.cat([x, gate * context], dim=1), (h, c))
        return alpha, h, c

    def scores_and_alphas(self, features: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, list]:
        """(N, T, V) vocabulary scores after each of the (N, T) input words, and the T (N, L) attention weights."""
        h, c, proj = self.init_state(features)
        x = self.embed(inputs)  # (N, T, W)
        hs, alphas = [], []
        for t in range(inputs.shape[1]):
            alpha, h, c = self.attend_and_step(features, proj, x[:, t], h, c)
            hs.append(h)
            alphas.append(alpha)
        return self.vocab(torch.stack(hs, dim=1)), alphas

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> torch.Tensor:
        """Loss of a minibatch: features (N, L, D), captions (N, T+1) int64; summed over words, / N."""
        N = captions.shape[0]
        scores, alphas = self.scores_and_alphas(features, captions[:, :-1])  # (N, T, V)
        targets = captions[:, 1:]
        loss = F.cross_entropy(scores.reshape(-1, self.vocab_size), targets.reshape(-1), reduction="sum",
                               ignore_index=NULL_ID)  # fmt: skip
        counts = (targets != NULL_ID).to(features.dtype).unsqueeze(2)  # (N, T, 1)
        cover = (torch.stack(alphas, dim=1) * counts).sum(dim=1)  # (N, L)
        return (loss + self.alpha_reg * ((1 - cover) ** 2).sum()) / N


def policy_forward(twin: TorchAttentionCaptioner, features, captions, weights) -> torch.Tensor:
    """The self-critical surrogate loss (``torch_twin.policy_loss``, no regulariser) on sampled captions."""
    return policy_loss(twin.scores_and_alphas(features, captions[:, :-1])[0], captions, weights)


def from_numpy_params(
    params: dict[str, np.ndarray], alpha_reg: float = 1.0, dtype: torch.dtype = torch.float32
) -> TorchAttentionCaptioner:
    """A twin holding ``params`` (our names and layouts, see the module docstring)."""
    D, H = params["W_init_h"].shape
    V, W = params["W_embed"].shape
    A = params["w_att"].shape[0]
    twin = TorchAttentionCaptioner(D, W, H, A, V, alpha_reg, dtype)
    order = gate_order("lstm", H)
    targets = {
        twin.init_h.weight: params["W_init_h"].T,
        twin.init_h.bias: params["b_init_h"],
        twin.init_c.weight: params["W_init_c"].T,
        twin.init_c.bias: params["b_init_c"],
        twin.feat_proj.weight: params["W_feat"].T,
        twin.feat_proj.bias: params["b_feat"],
        twin.h_att.weight: params["W_h_att"].T,
        twin.score.weight: params["w_att"][None, :],
        twin.beta.weight: params["W_beta"].T,
        twin.beta.bias: params["b_beta"],
        twin.embed.weight: params["W_embed"],
        twin.lstm.weight_ih: params["Wx"][:, order].T,
        twin.lstm.weight_hh: params["Wh"][:, order].T,
        twin.lstm.bias_ih: params["b"][order],
        twin.vocab.weight: params["W_vocab"].T,
        twin.vocab.bias: params["b_vocab"],
    }
    copy_into(targets)
    return twin


def grads_as_numpy(twin: TorchAttentionCaptioner) -> dict[str, np.ndarray]:
    """The gradients autograd left in ``.grad``, under our names and in our layouts."""
    require_grads(twin)
    order = gate_order("lstm", twin.hidden_dim)

    def g(t: torch.Tensor) -> np.ndarray:
        return t.grad.detach().cpu().numpy()

    return {
        "W_init_h": g(twin.init_h.weight).T,
        "b_init_h": g(twin.init_h.bias),
        "W_init_c": g(twin.init_c.weight).T,
        "b_init_c": g(twin.init_c.bias),
        "W_feat": g(twin.feat_proj.weight).T,
        "b_feat": g(twin.feat_proj.bias),
        "W_h_att": g(twin.h_att.weight).T,
        "w_att": g(twin.score.weight)[0],
        "W_beta": g(twin.beta.weight).T,
        "b_beta": g(twin.beta.bias),
        "W_embed": g(twin.embed.weight),
        "Wx": g(twin.lstm.weight_ih).T[:, order],
        "Wh": g(twin.lstm.weight_hh).T[:, order],
        "b": g(twin.lstm.bias_ih)[order],
        "W_vocab": g(twin.vocab.weight).T,
        "b_vocab": g(twin.vocab.bias),
    }


@torch.no_grad()
def sample(twin: TorchAttentionCaptioner, features: torch.Tensor, max_length: int = 30):
    """Greedy captions with rnncap's rules: (N, L, D) -> (N, max_length) int32 ids and (N, max_length, L)
    attention weights (zero after ``<END>``)."""
    h, c, proj = twin.init_state(features)
    N, L = features.shape[:2]
    on = features.device  # the twin's own device: a GPU for the benchmark's --device cuda
    captions = torch.full((N, max_length), NULL_ID, dtype=torch.int64, device=on)
    attention = torch.zeros((N, max_length, L), dtype=features.dtype, device=on)
    words = torch.full((N,), START_ID, dtype=torch.int64, device=on)
    finished = torch.zeros(N, dtype=torch.bool, device=on)
    for t in range(max_length):
        alpha, h, c = twin.attend_and_step(features, proj, twin.embed(words), h, c)
        log_probs = F.log_softmax(twin.vocab(h), dim=1)
        log_probs[:, [NULL_ID, START_ID, UNK_ID]] = -torch.inf
        words = log_probs.argmax(dim=1)
        captions[:, t] = torch.where(finished, NULL_ID, words)
        attention[:, t] = torch.where(finished[:, None], 0.0, alpha)
        finished |= words == END_ID
        if finished.all():
            break
    return captions.cpu().numpy().astype(np.int32), attention.cpu().numpy()
