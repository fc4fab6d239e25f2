"""rnncap: image captioning with recurrent networks whose every forward and backward step is written in NumPy.

::

    from rnncap import Captioner, load_model

    Captioner.from_pretrained().caption("dog.jpg")      # photos -> captions, with the shipped model
    model = load_model("runs/flickr/best.npz")          # a CaptioningRNN or an AttentionCaptioner
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The models are NumPy only; importing them here costs nothing that `import rnncap` does not already load.
from rnncap.models import AttentionCaptioner, CaptioningRNN, ModelFileError, load_model
from rnncap.text import decode_captions

if TYPE_CHECKING:
    from rnncap.apps.captioner import Captioner

__version__ = "0.2.0"

__all__ = [
    "AttentionCaptioner",
    "Captioner",
    "CaptioningRNN",
    "ModelFileError",
    "__version__",
    "decode_captions",
    "load_model",
]


def __getattr__(name: str) -> Any:
    # Captioner brings Pillow and the encoders: imported on first use, so `import rnncap` stays light.
    if name == "Captioner":
        from rnncap.apps.captioner import Captioner

        return Captioner
    raise AttributeError(f"module 'rnncap' has no attribute {name!r}")
