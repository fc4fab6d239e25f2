"""Captioning models: parameters in a dict, ``loss(features, captions) -> (loss, grads)``, decoding, files."""

from rnncap.models.captioning_rnn import CaptioningRNN
from rnncap.models.serialization import ModelFileError

__all__ = ["CaptioningRNN", "ModelFileError"]
