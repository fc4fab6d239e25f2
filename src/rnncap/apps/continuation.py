"""Whether a rerun of `rnncap train` on a run folder continues that run: same data, same model, same optimiser.

A run folder holds one run. A rerun continues it only when it would be the run that was never interrupted:

- the same data, by content: the vocabulary, and the fingerprint of what the run reads (:func:`data_fingerprint`),
  recorded in the model's metadata (``data_fingerprint``) when the run began; a run on several data sets the same
  data sets in the same order (``data_sets``; the fingerprint covers every one of them, in order);
- the same model settings (cell, sizes, dropout; attention or not);
- the same training settings, except those that only say how long to go on or what to show and keep
  (:data:`CONTINUABLE`: more epochs, another patience, the progress bar, the plot, every epoch's model kept).

Anything else (a changed learning rate too: the run would no longer be the one its history describes) stops the
rerun with a message that names each setting that differs, the run's value and the new one, and how to start
afresh. A run of rnncap 0.2 recorded no fingerprint: its vocabulary is checked, and the fingerprint is recorded
from its next checkpoint on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.models import MODELS, AttentionConfig, CaptionModel, ModelConfig
from rnncap.train import CaptionData, TrainConfig
from rnncap.train.checkpoint import TrainerState
from rnncap.train.data import take_rows

CONTINUABLE = ("num_epochs", "patience", "progress", "plot", "keep_epochs")
"""TrainConfig fields a rerun may change and still continue the run."""
DATA_SIZES = ("input_dim", "num_locations")
"""Model config fields that a run takes from its data, whatever the config given says."""
SAMPLE_ROWS = 64  # feature rows hashed per split: enough to tell another encoder's features, cheap for any size


def data_fingerprint(
    word_to_idx: dict[str, int], encoder: str, splits: dict[str, CaptionData], references: list[list[str]]
) -> str:
    """SHA-256 of what a run reads: the vocabulary, the encoder's name, each split's captions and photo indices
    whole and its features' shape with ``SAMPLE_ROWS`` evenly spaced rows, and the validation references.

    Two files with the same captions and features give the same fingerprint wherever they lie and whatever their
    names; a file whose words are numbered otherwise, or that holds other photos or captions, another one.
    """
    digest = hashlib.sha256(json.dumps([word_to_idx, encoder, references], sort_keys=True).encode())
    for name, split in sorted(splits.items()):
        rows = np.unique(np.linspace(0, len(split.features) - 1, SAMPLE_ROWS).astype(int))
        parts = [name, split.features.shape, split.features.dtype.str, split.captions.shape]
        digest.update(b"\1" + repr(parts).encode())
        digest.update(np.ascontiguousarray(split.captions, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(split.image_idxs, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(take_rows(split.features, rows), dtype=np.float32).tobytes())
    return digest.hexdigest()


def data_set_differences(model: CaptionModel, names: list[str] | None, data: str) -> list[str]:
    """Whether the run's data sets (metadata ``data_sets``; None: a run on one file) are ``names``, in order."""
    recorded = model.metadata.get("data_sets")
    if recorded == names:
        return []
    run = "one data file" if recorded is None else f"the data sets {recorded}"
    now = f"one data file ({data})" if names is None else f"the data sets {names} ({data})"
    return [f"the data: {run} in the run, {now} now"]


def data_differences(model: CaptionModel, word_to_idx: dict[str, int], fingerprint: str, data: Path | str) -> list[str]:
    """What differs between the run's data (``model``'s vocabulary and metadata) and ``data``'s, in words."""
    if model.word_to_idx != word_to_idx:
        return [f"the vocabulary: {vocabulary_difference(model.word_to_idx, word_to_idx, data)}"]
    recorded = model.metadata.get("data_fingerprint")
    if recorded is not None and recorded != fingerprint:
        return [
            f"the data: {data} holds other captions, photos or features than the run's "
            f"{model.metadata.get('data', 'data file')} (fingerprint {fingerprint[:12]}, the run's {recorded[:12]})"
        ]
    return []


def vocabulary_difference(run: dict[str, int], new: dict[str, int], data: Path | str) -> str:
    """The first word numbered otherwise, or the sizes; e.g. "'dog' is 10 in the run, 14 in b.h5"."""
    for word in sorted(run.keys() & new.keys()):
        if run[word] != new[word]:
            return f"{word!r} is {run[word]} in the run, {new[word]} in {data} ({len(run)} and {len(new)} words)"
    missing = sorted(run.keys() ^ new.keys())[:3]
    return f"the run has {len(run)} words, {data} {len(new)} (e.g. {missing} are in only one)"


def model_differences(run: ModelConfig, new: ModelConfig) -> list[str]:
    """Each model setting that differs: "hidden_dim: 256 in the run, 64 now"; or the kind of model. The sizes
    that come from the data (:data:`DATA_SIZES`) are the data's, checked with it."""
    if type(run) is not type(new):
        return [f"the model: {_kind(run)} in the run, {_kind(new)} now"]
    return _field_differences(asdict(run), asdict(new), DATA_SIZES)


def train_differences(run: TrainConfig, new: TrainConfig) -> list[str]:
    """Each training setting that differs, but for :data:`CONTINUABLE`."""
    return _field_differences(asdict(run), asdict(new), CONTINUABLE)


def _field_differences(run: dict[str, Any], new: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    return [
        f"{name}: {run[name]!r} in the run, {new[name]!r} now"
        for name in run
        if name not in allowed and run[name] != new[name]
    ]


def _kind(settings: ModelConfig) -> str:
    if isinstance(settings, AttentionConfig):
        return "the attention model"
    return f"a recurrent network of {settings.cell_type} cells"


def refusal(out_dir: Path, differences: list[str]) -> str:
    """The message of a rerun that would not continue the run in ``out_dir``."""
    return (
        f"{out_dir} holds a training run that these settings would not continue; they differ in "
        + "; ".join(differences)
        + f". To continue it, rerun with the run's settings (or leave those options out). To start afresh, "
        f"choose another run folder (--out), or remove {out_dir}."
    )


def run_settings(state: TrainerState) -> tuple[ModelConfig, TrainConfig]:
    """The model and training settings of the run checkpointed in ``state``, as their config dataclasses.

    Raises:
        ValueError: a model class or a config that this version does not know.
    """
    model_class = MODELS.get(state.model_config.get("model", ""))
    if model_class is None:
        raise ValueError(f"the run's model {state.model_config.get('model')!r} is not one of {sorted(MODELS)}")
    names = [item.name for item in fields(model_class.settings_class)]
    try:
        settings = model_class.settings_class(**{name: state.model_config[name] for name in names})
        return settings, TrainConfig(**state.config)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the run's settings do not fit this version's: {exc}") from exc


def init_record(path: Path) -> dict[str, Any]:
    """What names the model an SCST run started from: its path, size and SHA-256 (the run's metadata
    ``scst_init``), so that a rerun from other weights is refused whatever the file is called."""
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def init_differences(model: CaptionModel, init: Path | None) -> list[str]:
    """Whether the run's init model (metadata ``scst_init``) is the file ``init`` now, by content."""
    recorded = model.metadata.get("scst_init")
    if init is None:  # not given: the run's
        return []
    if recorded is None:
        return [f"init: the run trained from scratch, it would fine-tune {init} now"]
    now = init_record(init)
    if now["sha256"] != recorded.get("sha256"):
        return [
            f"init: the run fine-tuned {recorded['path']} (sha256 {recorded['sha256'][:12]}), {init} now holds "
            f"other weights (sha256 {now['sha256'][:12]})"
        ]
    return []
