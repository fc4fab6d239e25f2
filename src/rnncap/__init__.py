"""rnncap: image captioning with recurrent networks whose every forward and backward step is written in NumPy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rnncap.models import CaptioningRNN, ModelFileError
from rnncap.text import decode_captions

if TYPE_CHECKING:
    from rnncap.apps.captioner import Captioner

__version__ = "0.1.0"

__all__ = ["Captioner", "CaptioningRNN", "ModelFileError", "__version__", "decode_captions"]


def __getattr__(name: str) -> Any:
    # Captioner brings Pillow and the encoders: imported on first use, so `import rnncap` stays light.
    if name == "Captioner":
        from rnncap.apps.captioner import Captioner

        return Captioner
    raise AttributeError(f"module 'rnncap' has no attribute {name!r}")
