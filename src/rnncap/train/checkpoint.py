"""The files of a training run and the trainer state file that a resume reads (format ``rnncap-trainer-2``).

Written to the run's folder at the end of every epoch, each atomically (a temporary file renamed over the old):

- ``model.npz``: the current model (``model.save``); ``best.npz``: the model of the best epoch so far;
  with ``keep_epochs``, ``epoch-NNN.npz``: the model at the end of epoch NNN (:func:`epoch_file`), for averaging.
- ``history.json``: the history (see :meth:`rnncap.train.Trainer.train`); ``loss.png``: its curves.
- ``trainer_state.npz``, written LAST: the commit of the epoch. It holds everything a resume needs, so that it can
  never be half new and half old: arrays ``param/<name>`` (the current parameters), ``best/<name>`` (those of the
  best epoch, whenever there is a score), ``optim/<name>/<key>`` (the optimizer's state arrays), ``__format__``
  and ``__state__``, one JSON string with the epoch, the config, the model's config, vocabulary and metadata, the
  scorer, the best score, the shuffling generator's state, the optimizer's numbers and the history. Read with
  ``allow_pickle=False``.

Why a kill at any instant loses nothing: every file is replaced by an atomic rename, the state file last, and a
resume reads the state file alone (the model too is rebuilt from it) and first writes the other files again from
it (:func:`write_run_files`). A kill before the state's rename leaves the previous epoch committed (the other files
perhaps one epoch ahead, rewritten on resume); a kill after it leaves the new one (the others written already).
A rerun that has no epoch left to train still rewrites them, so no file stays behind the state.

Folders of format ``rnncap-trainer-1`` (rnncap 0.2 and before: no vocabulary or metadata in the state, best
parameters only with keep-best) still resume; their model's vocabulary and metadata come from ``model.npz``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rnncap.backend import is_array, to_numpy
from rnncap.files import atomic_write, leftover_temporaries
from rnncap.train.config import TrainConfig

if TYPE_CHECKING:
    from rnncap.models.base import CaptionModel
    from rnncap.train.scoring import Scorer

STATE_FORMAT = "rnncap-trainer-2"
OLD_STATE_FORMATS = ("rnncap-trainer-1",)  # still read: resumed as before, their vocabulary from model.npz
STATE_FILE = "trainer_state.npz"
MODEL_FILE = "model.npz"
BEST_FILE = "best.npz"
HISTORY_FILE = "history.json"
PLOT_FILE = "loss.png"
RUN_FILES = (MODEL_FILE, BEST_FILE, HISTORY_FILE, PLOT_FILE, STATE_FILE)  # in the order an epoch writes them


def epoch_file(epoch: int) -> str:
    """The name of the model kept at the end of ``epoch`` (1-based) with ``keep_epochs``: ``epoch-007.npz``."""
    return f"epoch-{epoch:03d}.npz"


History = dict[str, list]


@dataclass
class TrainerState:
    """What ``trainer_state.npz`` holds; see the module docstring.

    ``score_name``, ``score_key`` and ``higher_is_better`` record the scorer (:func:`scorer_record`), so that a
    resume can refuse to choose the best epoch otherwise than the run did. ``word_to_idx`` and ``metadata`` are
    None in a state of format ``rnncap-trainer-1``.
    """

    epoch: int  # epochs completed
    config: dict[str, Any]  # the TrainConfig's fields
    model_config: dict[str, Any]  # model.config()
    score_name: str | None
    score_key: str | None
    higher_is_better: bool
    best_score: float | None
    best_epoch: int | None
    rng_state: dict[str, Any]  # the shuffling generator's bit_generator.state
    history: History
    params: dict[str, np.ndarray]
    best_params: dict[str, np.ndarray] | None
    optim_configs: dict[str, dict[str, Any]]  # per parameter: hyper-parameters and the rule's state
    word_to_idx: dict[str, int] | None = None  # model.word_to_idx
    metadata: dict[str, Any] | None = None  # model.metadata


def scorer_record(scorer: Scorer | None) -> tuple[str | None, str | None, bool]:
    """How a state file records a scorer: (name, key, higher_is_better); (None, None, False) for none."""
    if scorer is None:
        return None, None, False
    return scorer.name, scorer.key, scorer.higher_is_better


def write_state(path: Path, state: TrainerState) -> None:
    """Write ``state`` to ``path`` atomically (NumPy arrays, whatever the device of the state's)."""
    arrays: dict[str, Any] = {f"param/{name}": to_numpy(value) for name, value in state.params.items()}
    arrays |= {f"best/{name}": to_numpy(value) for name, value in (state.best_params or {}).items()}
    optimizer: dict[str, dict[str, Any]] = {}  # JSON part of each optimizer config: hyper-parameters, Adam's step
    for name, param_config in state.optim_configs.items():
        optimizer[name] = {}
        for key, value in param_config.items():
            if is_array(value):
                arrays[f"optim/{name}/{key}"] = to_numpy(value)
            else:
                optimizer[name][key] = value
    numbers = {
        "epoch": state.epoch,
        "config": state.config,
        "model_config": state.model_config,
        "score_name": state.score_name,
        "score_key": state.score_key,
        "higher_is_better": state.higher_is_better,
        "best_score": state.best_score,
        "best_epoch": state.best_epoch,
        "rng_state": state.rng_state,
        "optimizer": optimizer,
        "history": state.history,
        "word_to_idx": state.word_to_idx,
        "metadata": state.metadata,
    }
    arrays["__format__"] = np.array(STATE_FORMAT)
    arrays["__state__"] = np.array(json.dumps(numbers, allow_nan=False))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_state(path: Path) -> TrainerState:
    """The state in a trainer state file, never unpickling.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable trainer state file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no trainer checkpoint {path}: train with out_dir={str(path.parent)!r} first")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        if str(arrays.pop("__format__", "")) not in (STATE_FORMAT, *OLD_STATE_FORMATS):
            raise ValueError(f"not a trainer state file (expected format {STATE_FORMAT!r})")
        numbers = json.loads(str(arrays.pop("__state__")))
        return _state_from(arrays, numbers)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable trainer checkpoint: {exc}") from exc


def _state_from(arrays: dict[str, np.ndarray], numbers: dict[str, Any]) -> TrainerState:
    def group(prefix: str) -> dict[str, np.ndarray]:
        return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}

    params = group("param/")
    optim_configs = {name: dict(numbers["optimizer"][name]) for name in params}
    for key, value in group("optim/").items():
        name, state_key = key.split("/", 1)
        optim_configs[name][state_key] = value
    return TrainerState(
        epoch=numbers["epoch"],
        config=numbers["config"],
        model_config=numbers["model_config"],
        score_name=numbers["score_name"],
        score_key=numbers["score_key"],
        higher_is_better=numbers["higher_is_better"],
        best_score=numbers["best_score"],
        best_epoch=numbers["best_epoch"],
        rng_state=numbers["rng_state"],
        history=numbers["history"],
        params=params,
        best_params=group("best/") or None,
        optim_configs=optim_configs,
        word_to_idx=numbers.get("word_to_idx"),
        metadata=numbers.get("metadata"),
    )


def write_run_files(
    out_dir: Path,
    state: TrainerState,
    model: CaptionModel,
    best_changed: bool,
    draw: Callable[[], object] | None,
    keep_epoch: bool = False,
) -> None:
    """Write an epoch's files from ``state``: model, the epoch's model (``keep_epoch``), best model (when
    ``best_changed``), history, plot (``draw``), and the state file last, which commits them (see the module
    docstring).

    ``model`` gives the configuration, vocabulary and metadata of the model files; their weights are the state's.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_debris(out_dir, [epoch_file(state.epoch)] if keep_epoch else [])
    _save_weights(model, state.params, out_dir / MODEL_FILE)
    if keep_epoch:
        _save_weights(model, state.params, out_dir / epoch_file(state.epoch))
    if best_changed and state.best_params is not None:
        _save_weights(model, state.best_params, out_dir / BEST_FILE)
    text = json.dumps(state.history, indent=1, allow_nan=False)
    atomic_write(out_dir / HISTORY_FILE, lambda f: f.write(text.encode()))
    if draw is not None:
        draw()
    write_state(out_dir / STATE_FILE, state)


def _save_weights(model: CaptionModel, params: dict[str, np.ndarray], path: Path) -> None:
    """``model`` with ``params`` for weights saved to ``path``, the model itself left as it is."""
    from rnncap.models.serialization import write_model_file  # the models load only with the trainer

    write_model_file(path, model.config(), model.word_to_idx, params, None, model.metadata)


def remove_debris(out_dir: Path, also: Iterable[str] = ()) -> None:
    """Remove the temporary files that kills in the middle of writes of the run files (and of the files ``also``)
    left (see rnncap.files.leftover_temporaries)."""
    for name in (*RUN_FILES, *also):
        for debris in leftover_temporaries(out_dir / name):
            debris.unlink(missing_ok=True)


def model_from_state(state: TrainerState, out_dir: Path) -> CaptionModel:
    """The model of a checkpoint with its current parameters: rebuilt from the state file alone, or for a state of
    format ``rnncap-trainer-1`` (no vocabulary in it) loaded from the folder's ``model.npz``.

    Raises:
        ValueError: the state names no model this version knows (or its old ``model.npz`` cannot be read).
    """
    from rnncap.models import MODELS, ModelFileError, load_model  # the models load only with the trainer

    if state.word_to_idx is None:
        try:
            model = load_model(out_dir / MODEL_FILE)
        except ModelFileError as exc:
            raise ValueError(
                f"{out_dir}: a run of format {OLD_STATE_FORMATS[0]!r} needs its model file: {exc}"
            ) from exc
    else:
        kwargs = dict(state.model_config)
        model_class = MODELS.get(kwargs.pop("model", None))
        if model_class is None:
            raise ValueError(f"{out_dir / STATE_FILE}: a model of config {state.model_config}, unknown here")
        model = model_class(state.word_to_idx, **kwargs)
        model.metadata = dict(state.metadata or {})
    check_model(state, model, out_dir)
    model.params = {name: value.astype(model.dtype, copy=False) for name, value in state.params.items()}
    return model


def check_out_dir(out_dir: Path, files: Iterable[str] = RUN_FILES) -> None:
    """Raise ValueError unless a run can write ``files`` in the folder ``out_dir`` (which may not exist yet).

    Checked before any work, so that a run never trains an epoch to fail at its first checkpoint.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the run folder {out_dir} is an existing file, not a folder: choose another folder")
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot create the run folder {out_dir}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the run folder {out_dir}: {existing} is not writable")
    for name in files:
        path = out_dir / name
        if path.exists() and not path.is_file():
            raise ValueError(f"{path} is in the way of the run's file {name}: it is not a file")


# ---------------------------------------------------------------------- what a resume checks


def with_new_settings(saved: dict[str, Any], model: CaptionModel) -> dict[str, Any]:
    """A checkpoint's model configuration with the settings added since it was written at their defaults (a run
    begun before ``image_input`` existed is an ``"init"`` run), as model files are read; unchanged when it is of
    another model class or does not make one (then the comparison names the difference)."""
    if saved.get("model") != type(model).__name__:
        return saved
    try:
        settings = model.settings_class(**{key: value for key, value in saved.items() if key not in ("model", "dtype")})
    except (TypeError, ValueError):
        return saved
    return {"model": saved["model"], **asdict(settings), "dtype": saved.get("dtype")}


def check_model(state: TrainerState, model: CaptionModel, where: Path) -> None:
    """Raise ValueError unless the checkpoint's parameters fit ``model`` (its configuration, names and shapes)."""
    if model.config() != with_new_settings(state.model_config, model):
        raise ValueError(
            f"{where}: the checkpoint is of a model {state.model_config}, the model given is {model.config()}"
        )
    for prefix, group in (("param/", state.params), ("best/", state.best_params or {})):
        for name, value in group.items():
            if name in model.params and value.shape != model.params[name].shape:
                raise ValueError(
                    f"{where}: {prefix}{name} has shape {value.shape}, the model's is {model.params[name].shape}"
                )
    if state.params.keys() != model.params.keys():
        raise ValueError(
            f"{where}: the checkpoint holds parameters {sorted(state.params)}, the model has {sorted(model.params)}"
        )
    if state.word_to_idx is not None and model.word_to_idx != state.word_to_idx:
        raise ValueError(f"{where}: the model's vocabulary is not the run's ({len(state.word_to_idx)} words)")


def continued_config(state: TrainerState, config: TrainConfig | None, where: Path) -> TrainConfig:
    """The config a resumed run continues with: ``config``, or None for the checkpoint's own.

    Raises:
        ValueError: the saved config is not one this version reads, or ``config`` changes the update rule (whose
            state could not carry over).
    """
    try:
        saved = TrainConfig(**state.config)
    except TypeError as exc:
        raise ValueError(f"{where}: the checkpoint's config does not fit this version's TrainConfig: {exc}") from exc
    config = saved if config is None else config
    if config.update_rule != saved.update_rule:
        raise ValueError(
            f"{where}: the run used update rule {saved.update_rule!r}, whose state cannot continue as "
            f"{config.update_rule!r}; start a new Trainer from the loaded model instead"
        )
    return config


def check_scorer(state: TrainerState, scorer: Scorer | None, where: Path) -> None:
    """Raise ValueError unless ``scorer`` chooses the best epoch as the checkpointed run did."""
    name, key, higher_is_better = scorer_record(scorer)
    if (name, key, higher_is_better) != (state.score_name, state.score_key, state.higher_is_better):
        raise ValueError(
            f"{where}: the run chose its best epoch by {state.score_name or 'nothing'} "
            f"(score_key={state.score_key!r}, higher_is_better={state.higher_is_better}), the resumed one would use "
            f"{name or 'nothing'} (score_key={key!r}, higher_is_better={higher_is_better}): pass the same "
            "validation data and score_fn"
        )


def new_history() -> History:
    """An empty history: the lists a run appends to, per minibatch and per completed epoch."""
    return {
        "iteration_loss": [],  # one per minibatch
        "epoch": [],  # the per-epoch lists below have one entry per completed epoch
        "iterations": [],  # minibatches done by the end of the epoch: the x of per-epoch points in a plot
        "learning_rate": [],
        "train_loss": [],  # mean minibatch loss over the epoch, per caption
        "val_loss": [],  # None without validation data
        "score": [],  # None without a score
        "metrics": [],  # what a score_fn returned by name, or None
        "epoch_time": [],  # seconds of training and validation
    }
