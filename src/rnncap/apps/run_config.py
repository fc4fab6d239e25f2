"""The settings of a `rnncap train` run in one object, from a TOML file named like the command's options.

    run = load_run_config("run.toml")     # data = "flickr8k.h5", attention = true, hidden = 512, lr_decay = 0.9 ...
    rnncap.apps.fit.fit_run(run)          # what `rnncap train --config run.toml` does

Every default is the one of the dataclass that holds the setting: the model's (:class:`~rnncap.models.RNNConfig`
or, with ``attention = true``, :class:`~rnncap.models.AttentionConfig`), :class:`~rnncap.train.TrainConfig`, and
:class:`RunConfig` for the data, the run folder and what chooses the best epoch. The module reads no data and
imports neither h5py nor the metrics, so that the command line can build its options from it at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rnncap.apps.paths import model_path
from rnncap.models import AttentionConfig, ModelConfig, RNNConfig, load_model
from rnncap.train.config import TOML_KEYS, TrainConfig, parse_options, read_toml
from rnncap.train.scst import scst_config

RUNS_DIR = Path("runs")  # where runs go by default: runs/<data name>-<cell>, runs/<data name>-attention

_MODEL_KEYS: dict[str, tuple[str, type]] = {
    # key in a run file, and option of `rnncap train`: (the field of RNNConfig or AttentionConfig, its type)
    "cell": ("cell_type", str),
    "wordvec": ("wordvec_dim", int),
    "hidden": ("hidden_dim", int),
    "dropout": ("dropout", float),
    "image_input": ("image_input", str),  # the recurrent network's alone: the attention model starts from its grid
    "attention_dim": ("attention_dim", int),  # the attention model's alone, like alpha_reg
    "alpha_reg": ("alpha_reg", float),
}
_FIT_KEYS: dict[str, tuple[str, type]] = {
    "data": ("data", Path),  # or several: a list in a run file, --data repeated (read by _data_option)
    "out": ("out_dir", Path),
    "train_split": ("train_split", str),
    "val_split": ("val_split", str),
    "select_by": ("select_by", str),
    "min_count": ("min_count", int),
}
_SCST_KEYS: dict[str, tuple[str, type]] = {
    # key in a run file, and option of `rnncap train --scst`: (the field of SCSTConfig, its type)
    "samples": ("num_samples", int),
    "baseline": ("baseline", str),
    "scst_max_length": ("max_length", int),
}
RUN_KEYS: dict[str, type] = {"attention": bool, "scst": bool, "init": str} | {
    key: kind for keys in (_MODEL_KEYS, TOML_KEYS, _FIT_KEYS, _SCST_KEYS) for key, (_, kind) in keys.items()
}
"""Every key of a run file, with the type of its value: ``attention`` chooses the model, the model's sizes, the
training settings (:data:`rnncap.train.config.TOML_KEYS`) and what the run reads and chooses by."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run of :func:`rnncap.apps.fit.fit` needs: the new model's config, the training config, the data
    and the choices.

    Attributes:
        settings: the new model's config (its ``input_dim`` and ``num_locations`` come from the data).
        train: the training settings.
        data: the prepared file, or several in order (one model on all: :mod:`rnncap.apps.joint`); None: not
            chosen yet (a run needs it).
        out_dir: the run's folder; None: :func:`default_run_dir`.
        train_split, val_split, select_by, min_count: as in :func:`rnncap.apps.fit.fit`.
        init: with ``scst``, the trained model to fine-tune: a model file or a shipped model's name (its settings
            are the run's model settings: ``settings`` is unused).
        given: the option values given (by a run file or the command line), keyed as in :data:`RUN_KEYS`; the
            other settings are defaults, and a run continued takes the run's own for them (:meth:`continuing`).
    """

    settings: ModelConfig = field(default_factory=RNNConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: Path | tuple[Path, ...] | None = None
    out_dir: Path | None = None
    train_split: str = "train"
    val_split: str = "dev"
    select_by: str = "CIDEr"
    min_count: int = 5
    init: str | None = None
    given: Mapping[str, Any] = field(default_factory=dict)

    @property
    def scst(self) -> bool:
        """Whether this run fine-tunes the ``init`` model self-critically (``train.scst`` is set)."""
        return self.train.scst is not None

    @property
    def data_files(self) -> tuple[Path, ...]:
        """``data`` as a tuple of one file or several; a run cannot do without: ValueError when it is None."""
        if self.data is None:
            raise ValueError("a run needs a data file (data = ... in the run file)")
        return self.data if isinstance(self.data, tuple) else (self.data,)

    @property
    def data_file(self) -> Path:
        """The one data file of a run on one; ValueError when there is none or there are several."""
        files = self.data_files
        if len(files) != 1:
            raise ValueError(f"this run reads {len(files)} data files, not one: use data_files")
        return files[0]

    @property
    def run_dir(self) -> Path:
        """``out_dir``, else the default folder of this data and model (:func:`default_run_dir`); of an SCST run
        ``runs/<data name>-<kind of the init model>-scst``."""
        if self.out_dir is not None:
            return self.out_dir
        if self.scst:
            assert self.init is not None  # from_options requires it
            return default_run_dir(self.data_files, init_settings(self.init), suffix="-scst")
        return default_run_dir(self.data_files, self.settings)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RunConfig:
        """A run from option values keyed as in :data:`RUN_KEYS`, of the right types; the rest default.

        Raises:
            ValueError: an unknown key, ``attention`` with a cell other than an LSTM, or a value a config refuses.
        """
        unknown = options.keys() - RUN_KEYS.keys()
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(RUN_KEYS)}")
        if options.get("scst", False):
            return cls._scst_from_options(options)
        scst_only = sorted(key for key in ("init", *_SCST_KEYS) if key in options)
        if scst_only:
            raise ValueError(f"{', '.join(scst_only)} belong to self-critical fine-tuning: add scst (--scst)")
        model = {name: options[key] for key, (name, _) in _MODEL_KEYS.items() if key in options}
        settings: ModelConfig
        if options.get("attention", False):
            cell_type = model.pop("cell_type", "lstm")
            if "image_input" in model:
                raise ValueError(
                    "image_input is the recurrent network's setting; the attention model's initial state comes "
                    "from its grid: leave image_input out with attention=True"
                )
            if cell_type != "lstm":
                raise ValueError(
                    f"the attention model's cell is an LSTM; cell_type {cell_type!r} needs attention=False"
                )
            settings = AttentionConfig(**model)
        else:  # the attention model's sizes are ignored, as the command line ignores them without --attention
            settings = RNNConfig(**{name: v for name, v in model.items() if name not in ("attention_dim", "alpha_reg")})
        train = TrainConfig.from_options({key: options[key] for key in TOML_KEYS if key in options})
        run = {name: options[key] for key, (name, _) in _FIT_KEYS.items() if key in options}
        return cls(settings, train, **run, given=dict(options))

    @classmethod
    def _scst_from_options(cls, options: Mapping[str, Any]) -> RunConfig:
        """An SCST run: the model is ``init``'s (no model options), batch size and learning rate default to the
        fine-tune's (:func:`rnncap.train.scst.scst_config`'s), no learning rate decay."""
        sizes = sorted(key for key in ("attention", *_MODEL_KEYS) if key in options)
        if sizes:
            raise ValueError(
                f"with scst the model is the init model, its settings its own: leave out {', '.join(sizes)}"
            )
        if options.get("init") is None:
            raise ValueError("scst fine-tunes a trained model: name it with init (--init MODEL)")
        base = TrainConfig.from_options({key: options[key] for key in TOML_KEYS if key in options and key != "lr"})
        scst = {name: options[key] for key, (name, _) in _SCST_KEYS.items() if key in options}
        # scst_config's defaults give way to what the options set, which ``base`` already holds
        given = {name: getattr(base, name) for name in ("batch_size", "lr_decay") if name in options}
        lr = {"learning_rate": options["lr"]} if "lr" in options else {}
        train = scst_config(base, **lr, **given, **scst)
        run = {name: options[key] for key, (name, _) in _FIT_KEYS.items() if key in options}
        return cls(RNNConfig(), train, **run, init=str(options["init"]), given=dict(options))

    def continuing(self, settings: ModelConfig, train: TrainConfig) -> RunConfig:
        """This run on top of a saved one's ``settings`` and ``train``: what was given is this run's, the rest the
        saved run's, so that a rerun of the same command (or with fewer options) continues it.

        A kind of model given that is not the saved one (``attention``, or a ``cell`` other than the attention
        model's LSTM) keeps this run's settings whole: :func:`rnncap.apps.fit.fit` then names the difference.
        ``progress`` and ``plot`` stay this run's: they show, they do not train.
        """
        settings, train = self._continued_settings(settings), self._continued_train(train)
        return replace(self, settings=settings, train=train, out_dir=self.run_dir)  # the folder of the saved run

    def _continued_settings(self, saved: ModelConfig) -> ModelConfig:
        saved_attention = isinstance(saved, AttentionConfig)
        attention = isinstance(self.settings, AttentionConfig) if "attention" in self.given else saved_attention
        if attention != saved_attention or (saved_attention and self.given.get("cell", "lstm") != "lstm"):
            return self.settings
        names = {item.name for item in fields(saved)}
        given = {_MODEL_KEYS[key][0]: value for key, value in self.given.items() if key in _MODEL_KEYS}
        return replace(saved, **{name: value for name, value in given.items() if name in names})

    def _continued_train(self, saved: TrainConfig) -> TrainConfig:
        values = {TOML_KEYS[key][0]: value for key, value in self.given.items() if key in TOML_KEYS and key != "lr"}
        if "lr" in self.given:
            values["optim_config"] = saved.optim_config | {"learning_rate": self.given["lr"]}
        scst = {_SCST_KEYS[key][0]: value for key, value in self.given.items() if key in _SCST_KEYS}
        if "scst" in self.given and self.given["scst"] != (saved.scst is not None):
            values["scst"] = self.train.scst  # a kind of run given that is not the saved one: named as a difference
        elif scst and saved.scst is not None:
            values["scst"] = replace(saved.scst, **scst)
        return replace(saved, **values, progress=self.train.progress, plot=self.train.plot)


def load_run_config(path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """The run of a TOML file whose keys are named like `rnncap train`'s options (:data:`RUN_KEYS`)::

        data = "flickr8k.h5"
        attention = true
        hidden = 512
        lr_decay = 0.9

    Args:
        path: the file; None: no file, ``overrides`` alone.
        overrides: values by the same keys that win over the file's (the command line's, for `rnncap train`).
            What neither sets takes the defaults of the model's config, TrainConfig and :class:`RunConfig`.

    Raises:
        ValueError: an unreadable file, an unknown key or a bad value (named with the file), or settings that do
            not go together.
    """
    values = {} if path is None else _parse(read_toml(path), str(path))
    values |= _parse(overrides or {}, "overrides")
    return RunConfig.from_options(values)


def _parse(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """:func:`parse_options` over :data:`RUN_KEYS`, ``data`` aside: one file name or a list of them."""
    parsed = parse_options({key: v for key, v in values.items() if key != "data"}, RUN_KEYS, source)
    if "data" in values:
        parsed["data"] = _data_option(values["data"], source)
    return parsed


def _data_option(value: Any, source: str) -> Path | tuple[Path, ...]:
    """A ``data`` value: a file name, or a non-empty list of them (one alone reads as the file itself)."""
    names = list(value) if isinstance(value, list | tuple) else [value]
    if not names or not all(isinstance(name, str | os.PathLike) and str(name) for name in names):
        raise ValueError(f"{source}: data must be a file name or a list of file names, got {value!r}")
    paths = tuple(Path(name) for name in names)
    return paths[0] if len(paths) == 1 else paths


def default_run_dir(
    data: str | os.PathLike | Sequence[str | os.PathLike], settings: ModelConfig, suffix: str = ""
) -> Path:
    """``runs/<data name>-<cell>`` (``runs/flickr8k-lstm``), or ``runs/<data name>-attention``; several data files
    join their names with ``+`` (``runs/flickr8k+coco-attention``); ``suffix`` follows (``-scst``)."""
    model = "attention" if isinstance(settings, AttentionConfig) else settings.cell_type
    files = [data] if isinstance(data, str | os.PathLike) else list(data)
    return RUNS_DIR / f"{'+'.join(Path(path).stem for path in files)}-{model}{suffix}"


def init_settings(init: str | os.PathLike) -> ModelConfig:
    """The settings of the model file or shipped model ``init`` (what an SCST run fine-tunes)."""
    return load_model(model_path(init)).settings
