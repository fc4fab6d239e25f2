"""The models a server offers: the one it was started with (the default) and the shipped ones, loaded once.

Models that read the same encoder share one instance of it, loaded at start-up so that the first request does not
pay for it. A client names a model only by these names: a name is looked up here, never turned into a path.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from rnncap.apps.captioner import Captioner
from rnncap.apps.paths import ASSETS, DEFAULT_MODEL
from rnncap.encoders import Encoder
from rnncap.encoders.encoder import Backend
from rnncap.models import ModelFileError, load_model


@dataclass(frozen=True)
class ServedModels:
    """Captioners by name; ``default`` is the one a request gets when it names none."""

    default: str
    captioners: dict[str, Captioner]

    def get(self, name: str | None) -> Captioner | None:
        """The captioner called ``name`` (None: the default), or None for a name the server does not offer."""
        return self.captioners.get(self.default if name is None else name)

    def describe(self) -> list[dict[str, object]]:
        """What ``GET /api/models`` lists: name, encoder, whether it attends, its default caption length."""
        return [
            {
                "name": name,
                "default": name == self.default,
                "encoder": captioner.encoder_name,
                "kind": type(captioner.model).__name__,
                "attention": captioner.has_attention,
                "max_length": captioner.max_length,
                "vocab_size": captioner.model.vocab_size,
            }
            for name, captioner in self.captioners.items()
        ]


def model_name(name_or_path: str | os.PathLike | None) -> str:
    """How the API calls a model given on the command line: a shipped name as it is, a file by its stem."""
    if name_or_path is None:
        return DEFAULT_MODEL
    return Path(name_or_path).stem


def load_served_models(
    name_or_path: str | os.PathLike | None = None, *, shipped: bool = True, backend: Backend = "auto"
) -> ServedModels:
    """Load the default model (a shipped name or a model file), the other shipped models unless ``shipped`` is
    False, and their encoders.

    Raises:
        ModelFileError: the default model is missing, corrupt or unusable (a shipped one that fails is left out,
            with a warning).
    """
    default = model_name(name_or_path)
    first = Captioner.from_pretrained(name_or_path, backend=backend)
    encoders: dict[str, Encoder] = {first.encoder_name: first.encoder}  # .encoder loads it now
    captioners = {default: first}
    for path in sorted(ASSETS.glob("*.npz")) if shipped else []:
        if path.stem in captioners:
            continue
        try:
            model = load_model(path)
            spec_name = Captioner(model).encoder_name  # cheap: the encoder is not loaded yet
            if spec_name not in encoders:
                encoders[spec_name] = Captioner(model, backend=backend).encoder
            captioners[path.stem] = Captioner(model, encoders[spec_name])
        except (ModelFileError, ValueError, OSError) as err:
            warnings.warn(f"the shipped model {path.stem} is left out: {err}", stacklevel=2)
    return ServedModels(default, captioners)
