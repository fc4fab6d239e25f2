"""TrainConfig: the settings of a training run and the one place their defaults are written; read from TOML.

The defaults are the recipe of the shipped models and of ``rnncap train`` (15 epochs of batch 128, Adam at 2e-3
decayed by 0.9 per epoch, early stopping after 4 epochs without a better score). A TOML file names the settings
as ``rnncap train`` names its options (:data:`TOML_KEYS`)::

    epochs = 20
    lr = 1e-3
    clip = 25.0

    config = TrainConfig.from_toml("train.toml")
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnncap.checks import is_integer, is_real
from rnncap.optim import DEFAULTS, resolve_hyperparameters

BASELINES = ("greedy", "mean")


@dataclass(frozen=True)
class SCSTConfig:
    """The settings of self-critical fine-tuning (:mod:`rnncap.train.scst`); a :class:`TrainConfig` holding one
    trains with it.

    Attributes:
        num_samples: K captions drawn per photo per step.
        baseline: ``"mean"`` (default: the mean reward of the photo's other K - 1 samples, Luo 2020, who found it
            better than the greedy one; it also skips the greedy decoding, a third of a Flickr8k LSTM step) or
            ``"greedy"`` (the greedy caption's reward, Rennie et al.).
        max_length: the most tokens a sampled or greedy caption has, ``<END>`` included (16, as
            self-critical.pytorch's ``max_length``).
        count_end: score ``<END>`` as a word in the rewards (as self-critical.pytorch; see rnncap.train.rewards).
    """

    num_samples: int = 5
    baseline: str = "mean"
    max_length: int = 16
    count_end: bool = True

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_length"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"scst {name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.baseline not in BASELINES:
            raise ValueError(f"scst baseline must be one of {list(BASELINES)}, got {self.baseline!r}")
        if self.baseline == "mean" and self.num_samples < 2:
            raise ValueError(f"the mean baseline needs num_samples >= 2, got {self.num_samples}")
        if self.count_end not in (True, False):
            raise ValueError(f"scst count_end must be True or False, got {self.count_end!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run; JSON-serialisable, saved in every checkpoint.

    Attributes:
        num_epochs: passes over the training captions.
        batch_size: captions per update; the last batch of an epoch may be smaller.
        update_rule: a name in :data:`rnncap.optim.UPDATE_RULES`.
        optim_config: hyper-parameters of the rule (see :data:`rnncap.optim.DEFAULTS`); missing ones take the
            rule's defaults, the learning rate too: a dict without ``learning_rate`` runs Adam at 1e-3.
        lr_decay: the learning rate is multiplied by this after every epoch, in (0, 1].
        max_grad_norm: clip the global gradient norm to this before each update; None: no clipping.
        seed: seeds the generator that shuffles the captions (``fit`` seeds the initial weights with it too).
        val_batch_size: captions per batch when computing the validation loss; None: ``batch_size``.
        keep_best: end with the parameters of the epoch with the best score; None: when there is a score
            (validation data or a ``score_fn``). True without a score is an error.
        patience: stop after this many epochs without a better score; None: never stop early. A run without a
            score has nothing to count and trains all ``num_epochs``.
        progress: show a progress bar per epoch; None: only on a terminal.
        plot: draw ``loss.png`` in ``out_dir`` every epoch.
        keep_epochs: also keep every epoch's model in ``out_dir`` (``epoch-001.npz`` ...), to average the last
            few (:func:`rnncap.models.average_models`, ``rnncap average``).
        scst: self-critical fine-tuning instead of teacher forcing (:mod:`rnncap.train.scst`; ``batch_size``
            then counts photos); a dict of its fields is read as one (a saved config). None: teacher forcing.
    """

    num_epochs: int = 15
    batch_size: int = 128
    update_rule: str = "adam"
    optim_config: dict[str, float] = field(default_factory=lambda: {"learning_rate": 2e-3})
    lr_decay: float = 0.9
    max_grad_norm: float | None = None
    seed: int = 0
    val_batch_size: int | None = None
    keep_best: bool | None = None
    patience: int | None = 4
    progress: bool | None = None
    plot: bool = True
    keep_epochs: bool = False
    scst: SCSTConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scst, dict):  # as asdict() saved it in a checkpoint
            object.__setattr__(self, "scst", SCSTConfig(**self.scst))
        if self.scst is not None and not isinstance(self.scst, SCSTConfig):
            raise ValueError(f"scst must be an SCSTConfig or None, got {self.scst!r}")
        for name, minimum in (
            ("num_epochs", 1),
            ("batch_size", 1),
            ("seed", 0),
            ("val_batch_size", 1),
            ("patience", 1),
        ):
            value = getattr(self, name)
            if value is None and name in ("val_batch_size", "patience"):
                continue
            if not is_integer(value) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            # NumPy integers become ints: the config is saved as JSON.
            object.__setattr__(self, name, int(value))
        self._check_optimizer()
        if not is_real(self.lr_decay) or not 0 < self.lr_decay <= 1:
            raise ValueError(
                f"lr_decay multiplies the learning rate every epoch and must be in (0, 1], got {self.lr_decay!r}"
            )
        if self.max_grad_norm is not None and (
            not is_real(self.max_grad_norm) or not 0 < self.max_grad_norm < math.inf
        ):
            raise ValueError(f"max_grad_norm must be a positive finite number or None, got {self.max_grad_norm!r}")
        object.__setattr__(self, "lr_decay", float(self.lr_decay))
        if self.max_grad_norm is not None:
            object.__setattr__(self, "max_grad_norm", float(self.max_grad_norm))
        for name in ("keep_best", "progress"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"{name} must be True, False or None, got {getattr(self, name)!r}")
        for name in ("plot", "keep_epochs"):
            if getattr(self, name) not in (True, False):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def _check_optimizer(self) -> None:
        if self.update_rule not in DEFAULTS:
            raise ValueError(f"update_rule must be one of {sorted(DEFAULTS)}, got {self.update_rule!r}")
        if not isinstance(self.optim_config, dict):
            raise ValueError(f"optim_config must be a dict of hyper-parameters, got {self.optim_config!r}")
        state_keys = self.optim_config.keys() - DEFAULTS[self.update_rule].keys()
        if state_keys:
            raise ValueError(
                f"optim_config for {self.update_rule} takes {sorted(DEFAULTS[self.update_rule])}, "
                f"not {sorted(state_keys)}"
            )
        resolve_hyperparameters(self.update_rule, self.optim_config)
        # Plain floats, copied: the run must not change when the caller's dict does, and JSON needs floats.
        object.__setattr__(self, "optim_config", {key: float(v) for key, v in self.optim_config.items()})

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TrainConfig:
        """A config from settings named as in a TOML file (:data:`TOML_KEYS`), already of the right types;
        the rest default.

        Raises:
            ValueError: a key that is not in :data:`TOML_KEYS`, or a value the config refuses.
        """
        unknown = options.keys() - TOML_KEYS.keys()
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(TOML_KEYS)}")
        fields: dict[str, Any] = {TOML_KEYS[key][0]: value for key, value in options.items() if key != "lr"}
        if "lr" in options:
            fields["optim_config"] = {"learning_rate": options["lr"]}
        return cls(**fields)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TrainConfig:
        """A config from a TOML file of the keys in :data:`TOML_KEYS` (``epochs = 20``, ``lr = 1e-3``); the
        settings it leaves out default. A run file that also shapes the model and names the data is read by
        :func:`rnncap.apps.run_config.load_run_config`.

        Raises:
            ValueError: an unreadable file, an unknown key or a bad value, with the file's name.
        """
        kinds = {key: kind for key, (_, kind) in TOML_KEYS.items()}
        return cls.from_options(parse_options(read_toml(path), kinds, str(path)))


TOML_KEYS: dict[str, tuple[str, type]] = {
    # key in a TOML file, and option of `rnncap train`: (the TrainConfig field it sets, the type of its value)
    "epochs": ("num_epochs", int),
    "batch_size": ("batch_size", int),
    "update_rule": ("update_rule", str),
    "lr": ("optim_config", float),  # the learning rate: optim_config = {"learning_rate": lr}
    "lr_decay": ("lr_decay", float),
    "clip": ("max_grad_norm", float),
    "patience": ("patience", int),
    "seed": ("seed", int),
    "keep_epochs": ("keep_epochs", bool),
}
"""The settings a TOML file may hold, by key."""


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """The keys and values of a TOML file; a ``-`` in a key reads as ``_`` (``batch-size`` is ``batch_size``).

    Raises:
        ValueError: the file cannot be read or is not TOML.
    """
    try:
        values = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read the config file {path}: {exc}") from exc
    return {key.replace("-", "_"): value for key, value in values.items()}


def parse_options(values: Mapping[str, Any], kinds: Mapping[str, type], source: str) -> dict[str, Any]:
    """Check the keys of ``values`` against ``kinds`` and give each value its type (bool, int, float, str, Path).

    A value is read as its text would be on the command line (``epochs = "3"`` is 3, ``hidden = 16.0`` is not an
    integer); a bool must be true or false.

    Raises:
        ValueError: naming ``source`` (the file) and the key.
    """
    parsed = {}
    for key, value in values.items():
        if key not in kinds:
            raise ValueError(f"{source}: unknown option {key!r}; known: {sorted(kinds)}")
        kind = kinds[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{source}: {key} must be true or false, got {value!r}")
            parsed[key] = value
            continue
        error = ValueError(f"{source}: {key} must be {_KIND_NAMES[kind]}, got {value!r}")
        if isinstance(value, bool) or not isinstance(value, str | int | float | os.PathLike):  # not a table, list, date
            raise error
        try:
            parsed[key] = kind(str(value))
        except ValueError:
            raise error from None
    return parsed


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", Path: "a file name"}
