"""Parity with PyTorch for self-critical training: on the same sampled captions and advantages, the NumPy
surrogate loss and its gradients equal autograd's through the torch twins (``torch_twin.policy_forward``,
``torch_attention_twin.policy_forward``), for every cell, both image inputs, and the attention model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity tests compare against PyTorch (pip install '.[torch]')")

import torch_attention_twin  # noqa: E402
import torch_twin  # noqa: E402
from helpers import assert_same_loss_and_gradients, small_model  # noqa: E402
from rnncap.sampling import sample_captions  # noqa: E402
from rnncap.train.scst import with_start  # noqa: E402

START = 1


def sampled_batch(model, seed: int = 0):
    """5 photos, 3 samples each drawn by the NumPy sampler, and advantages of both signs."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((5, *model.feature_shape))
    samples = sample_captions(model, features, 3, 8, rng)
    return features[samples.images], with_start(samples.ids, START), rng.standard_normal(15)


def twin_policy(model, features, captions, advantage):
    if model.attends:
        twin = torch_attention_twin.from_numpy_params(model.params, model.alpha_reg, torch.float64)
        forward, grads_of = torch_attention_twin.policy_forward, torch_attention_twin.grads_as_numpy
    else:
        twin = torch_twin.from_numpy_params(model.params, model.cell_type, torch.float64, model.image_input)
        forward, grads_of = torch_twin.policy_forward, torch_twin.grads_as_numpy
    loss = forward(twin, torch.from_numpy(features), torch.from_numpy(captions).long(), torch.from_numpy(advantage))
    loss.backward()
    return loss.item(), grads_of(twin)


@pytest.mark.parametrize(
    ("kind", "settings"),
    [("rnn", {}), ("lstm", {}), ("gru", {}), ("lstm", {"image_input": "first_word"}), ("attention", {})],
)
def test_surrogate_gradients_match_torch(kind: str, settings: dict) -> None:
    model = small_model(kind, np.random.default_rng(3), scale=0.4, **settings)
    features, captions, advantage = sampled_batch(model)
    ours = model.loss(features, captions, caption_weights=advantage)
    assert_same_loss_and_gradients(model, ours, twin_policy(model, features, captions, advantage), 1e-10, 1e-8)
