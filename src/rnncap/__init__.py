"""rnncap: image captioning with recurrent networks whose every forward and backward step is written in NumPy."""

from rnncap.models import CaptioningRNN, ModelFileError
from rnncap.vocab import decode_captions

__version__ = "0.1.0"

__all__ = ["CaptioningRNN", "ModelFileError", "__version__", "decode_captions"]
