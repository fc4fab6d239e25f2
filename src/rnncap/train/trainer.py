"""The trainer: shuffled minibatch epochs, validation, keep-best, early stopping and checkpoints that resume exactly.

A run is a model, a :class:`CaptionData` training split (and optionally a validation split) and a
:class:`TrainConfig`; the features are pooled vectors (M, D) for a :class:`~rnncap.models.CaptioningRNN` or grids
(M, L, D) for an :class:`~rnncap.models.AttentionCaptioner`, whichever the model reads (its ``feature_shape``)::

    trainer = Trainer(model, train, val, TrainConfig(num_epochs=50, optim_config={"learning_rate": 5e-3}),
                      out_dir="runs/coco")
    history = trainer.train()           # the model now holds the parameters of its best epoch
    trainer = Trainer.resume("runs/coco", train, val)   # after an interruption: continues bit for bit
    trainer.train()

Each epoch draws a fresh permutation of the training captions from one ``np.random.Generator`` seeded by
``config.seed``, so a run is a pure function of its inputs, and the generator's state is part of every checkpoint.
The learning rate of epoch ``e`` (from 0) is ``learning_rate * lr_decay ** e``, a function of the epoch rather than
a running product, so that a resumed run computes the very same floats.

Files written to ``out_dir`` at the end of every epoch, each atomically (a temporary file renamed over the old):

- ``trainer_state.npz``: everything :meth:`Trainer.resume` needs in one file, so that it can never be half new
  and half old: current and best parameters, the optimizer state arrays, and one JSON string with the epoch,
  the config, the history, the best score and the shuffling generator's state. Read with ``allow_pickle=False``.
- ``model.npz``: the current model (``model.save``); ``best.npz``: the model of the best epoch so far.
- ``history.json``: the history (see :meth:`Trainer.train`); ``loss.png``: its curves.

If the loss or a gradient turns NaN or infinite, training stops with :class:`TrainingDiverged` before anything is
written, so the files of the last good epoch stay as they were.

References: Stanford CS231n assignment 3, ``captioning_solver.py`` (update rules per parameter, ``lr_decay`` per
epoch); karpathy/nanoGPT ``train.py`` (config dataclass, checkpoint and resume).
"""

from __future__ import annotations

import json
import math
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from rnncap.files import atomic_write
from rnncap.models import load_model
from rnncap.optim import DEFAULTS, clip_grad_norm, get_update_rule, global_norm, resolve_hyperparameters
from rnncap.text import check_caption_ids

STATE_FORMAT = "rnncap-trainer-1"
STATE_FILE = "trainer_state.npz"
MODEL_FILE = "model.npz"
BEST_FILE = "best.npz"
HISTORY_FILE = "history.json"
PLOT_FILE = "loss.png"

History = dict[str, list]
ScoreFn = Callable[[Any], float | Mapping[str, float]]


class TrainingDiverged(RuntimeError):  # noqa: N818 (named for the event, like StopIteration)
    """The loss, a gradient or a parameter became NaN or infinite; nothing of that epoch was written to disk."""

    def __init__(self, message: str, epoch: int, iteration: int | None, loss: float | None) -> None:
        super().__init__(message)
        self.epoch, self.iteration, self.loss = epoch, iteration, loss


@dataclass(frozen=True, eq=False)
class CaptionData:
    """One split of a captioning data set in CS231n's COCO layout: one row per caption, images stored once.

    Attributes:
        features: (M, D) pooled or (M, L, D) grid floating-point features of M images, any float dtype: the
            model casts each batch, so a float16 grid stays half the size of a float32 one.
        captions: (K, T) integer token ids, ``<START> ... <END> <NULL>...``, T >= 2.
        image_idxs: (K,) integers in [0, M): the image of every caption.
    """

    features: np.ndarray
    captions: np.ndarray
    image_idxs: np.ndarray

    def __post_init__(self) -> None:
        features, captions, image_idxs = (np.asarray(a) for a in (self.features, self.captions, self.image_idxs))
        if features.ndim not in (2, 3) or features.shape[0] == 0:
            raise ValueError(f"features must have shape (M, D) or (M, L, D) with M >= 1, got {features.shape}")
        if not np.issubdtype(features.dtype, np.floating):
            raise ValueError(f"features must be floating point, got dtype {features.dtype}")
        finite = np.isfinite(features).all(axis=tuple(range(1, features.ndim)))  # (M,): one per image
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ValueError(f"features hold NaN or infinite values (rows {rows[:10].tolist()})")
        check_caption_ids(captions)
        if image_idxs.shape != (captions.shape[0],):
            raise ValueError(
                f"image_idxs must have shape ({captions.shape[0]},), one per caption, got {image_idxs.shape}"
            )
        if not np.issubdtype(image_idxs.dtype, np.integer):
            raise ValueError(f"image_idxs must be integers, got dtype {image_idxs.dtype}")
        if image_idxs.min() < 0 or image_idxs.max() >= features.shape[0]:
            bad = image_idxs.min() if image_idxs.min() < 0 else image_idxs.max()
            raise ValueError(f"image_idxs holds {bad}, outside [0, {features.shape[0]}) (the rows of features)")
        # The dataclass is frozen so that nobody swaps an array after these checks; set the converted arrays once.
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "captions", captions)
        object.__setattr__(self, "image_idxs", image_idxs)

    def __len__(self) -> int:
        """K, the number of captions."""
        return self.captions.shape[0]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run; JSON-serialisable, saved in every checkpoint.

    Attributes:
        num_epochs: passes over the training captions.
        batch_size: captions per update; the last batch of an epoch may be smaller.
        update_rule: a name in :data:`rnncap.optim.UPDATE_RULES`.
        optim_config: hyper-parameters of the rule (see :data:`rnncap.optim.DEFAULTS`); missing ones default.
        lr_decay: the learning rate is multiplied by this after every epoch, in (0, 1].
        max_grad_norm: clip the global gradient norm to this before each update; None: no clipping.
        seed: seeds the generator that shuffles the captions (the model's initial weights have their own seed).
        val_batch_size: captions per batch when computing the validation loss; None: ``batch_size``.
        keep_best: end with the parameters of the epoch with the best score; None: when there is a score
            (validation data or a ``score_fn``).
        patience: stop after this many epochs without a better score; None: never stop early.
        progress: show a progress bar per epoch; None: only on a terminal.
        plot: draw ``loss.png`` in ``out_dir`` every epoch.
    """

    num_epochs: int = 10
    batch_size: int = 100
    update_rule: str = "adam"
    optim_config: dict[str, float] = field(default_factory=dict)
    lr_decay: float = 1.0
    max_grad_norm: float | None = None
    seed: int = 0
    val_batch_size: int | None = None
    keep_best: bool | None = None
    patience: int | None = None
    progress: bool | None = None
    plot: bool = True

    def __post_init__(self) -> None:
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
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
            # NumPy integers become ints: the config is saved as JSON.
            object.__setattr__(self, name, int(value))
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
        if not _is_real(self.lr_decay) or not 0 < self.lr_decay <= 1:
            raise ValueError(
                f"lr_decay multiplies the learning rate every epoch and must be in (0, 1], got {self.lr_decay!r}"
            )
        if self.max_grad_norm is not None and (
            not _is_real(self.max_grad_norm) or not 0 < self.max_grad_norm < math.inf
        ):
            raise ValueError(f"max_grad_norm must be a positive finite number or None, got {self.max_grad_norm!r}")
        object.__setattr__(self, "lr_decay", float(self.lr_decay))
        if self.max_grad_norm is not None:
            object.__setattr__(self, "max_grad_norm", float(self.max_grad_norm))
        for name in ("keep_best", "progress"):
            if getattr(self, name) not in (None, True, False):
                raise ValueError(f"{name} must be True, False or None, got {getattr(self, name)!r}")
        if self.plot not in (True, False):
            raise ValueError(f"plot must be True or False, got {self.plot!r}")


class _Split(NamedTuple):
    """A :class:`CaptionData` checked against one model."""

    features: np.ndarray  # (M, D) or (M, L, D), as given: the model casts each batch
    captions: np.ndarray  # (K, T)
    image_idxs: np.ndarray  # (K,)


class Trainer:
    """Trains a captioning model with minibatch gradient descent; see the module docstring.

    The model may be any object with CaptioningRNN's training interface: ``params`` (dict of arrays),
    ``loss(features, captions) -> (loss, grads)``, ``save(path)``, ``config()``, ``vocab_size``, ``dtype`` and
    ``feature_shape`` (one image's features, e.g. (L, D)) or else ``input_dim`` (pooled features (D,)).
    """

    def __init__(
        self,
        model: Any,
        train: CaptionData,
        val: CaptionData | None = None,
        config: TrainConfig | None = None,
        out_dir: str | os.PathLike | None = None,
        *,
        score_fn: ScoreFn | None = None,
        higher_is_better: bool | None = None,
        score_key: str | None = None,
    ) -> None:
        """Set up a run; nothing is trained or written until :meth:`train`.

        Args:
            model: the model to train, in place.
            train: the training split.
            val: the validation split; its mean loss is reported every epoch and is the default score.
            config: the run's settings; default ``TrainConfig()``.
            out_dir: where checkpoints, history and plot go; None: keep nothing on disk.
            score_fn: ``score_fn(model) -> float`` called after every epoch to choose the best epoch (e.g. BLEU
                of sampled captions); default: the validation loss. It may instead return several numbers by
                name (e.g. ``{"BLEU-4": .., "CIDEr": ..}``): all go into the history, ``score_key`` chooses.
            higher_is_better: whether a larger ``score_fn`` value is better; required with ``score_fn``.
            score_key: with a ``score_fn`` that returns a mapping, the entry that chooses the best epoch.

        Raises:
            ValueError: data that does not fit the model, or a score set-up that cannot work.
        """
        self.config = TrainConfig() if config is None else config
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        self.model = model
        self.train_data, self.val_data = train, val
        self._train = _prepare_split(model, train, "train")
        self._val = None if val is None else _prepare_split(model, val, "val")
        self.out_dir = None if out_dir is None else Path(out_dir)

        if score_fn is not None:
            if not callable(score_fn):
                raise ValueError(f"score_fn must be callable as score_fn(model) -> float, got {score_fn!r}")
            if higher_is_better is None:
                raise ValueError(
                    "with a score_fn, say whether higher_is_better (True for BLEU/CIDEr, False for a loss)"
                )
            self.score_name = "score_fn"
        elif score_key is not None:
            raise ValueError("score_key names an entry of a score_fn's result: pass the score_fn too")
        elif val is not None:
            if higher_is_better:
                raise ValueError("the default score is the validation loss, where lower is better")
            self.score_name = "val_loss"
        else:
            self.score_name = None
        self.score_fn = score_fn
        self.score_key = score_key
        self.higher_is_better = bool(higher_is_better)
        self.keep_best = self.score_name is not None if self.config.keep_best is None else self.config.keep_best
        if self.score_name is None and (self.keep_best or self.config.patience is not None):
            raise ValueError("keep_best and patience need a score: pass validation data or a score_fn")

        self._rule = get_update_rule(self.config.update_rule)
        self.optim_configs: dict[str, dict[str, Any]] = {name: {} for name in model.params}
        self._rng = np.random.default_rng(self.config.seed)
        self.epoch = 0  # epochs completed
        self.history: History = {
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
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_params: dict[str, np.ndarray] | None = None
        # After train() swaps the best parameters in, the last ones wait here for a further train() call.
        self._last_params: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ training

    @property
    def stopped_early(self) -> bool:
        """Whether ``patience`` epochs have passed without a better score."""
        patience, best = self.config.patience, self.best_epoch
        return patience is not None and best is not None and self.epoch - best >= patience

    def train(self) -> History:
        """Train up to ``config.num_epochs`` (counting epochs done before a resume), or until early stopping.

        With ``keep_best`` the model ends holding the parameters of the best epoch. Calling ``train()`` again
        (after raising ``config.num_epochs``) continues from the last epoch's parameters, not the best.

        Returns:
            The history, lists of plain numbers: ``iteration_loss`` (one per minibatch); per epoch ``epoch``,
            ``iterations`` (minibatches so far), ``learning_rate``, ``train_loss``, ``val_loss``, ``score``
            (None where there is none) and ``epoch_time`` (seconds; the only entry that differs between two
            runs with the same seed).

        Raises:
            TrainingDiverged: the loss, a gradient or a parameter became non-finite.
        """
        if self._last_params is not None:
            self.model.params, self._last_params = self._last_params, None
        while self.epoch < self.config.num_epochs and not self.stopped_early:
            self._train_epoch()
        if self.keep_best and self.best_params is not None:
            self._last_params = self.model.params
            self.model.params = {name: value.copy() for name, value in self.best_params.items()}
        return self.history

    def _train_epoch(self) -> None:
        cfg, split = self.config, self._train
        epoch = self.epoch + 1
        hyper = resolve_hyperparameters(cfg.update_rule, cfg.optim_config)
        learning_rate = hyper["learning_rate"] * cfg.lr_decay**self.epoch
        for param_config in self.optim_configs.values():
            param_config.update(hyper, learning_rate=learning_rate)

        K = len(split.captions)
        order = self._rng.permutation(K)
        num_batches = math.ceil(K / cfg.batch_size)
        start_time = time.perf_counter()
        total_loss = 0.0
        disable = None if cfg.progress is None else not cfg.progress
        with tqdm(total=K, desc=f"epoch {epoch}/{cfg.num_epochs}", unit="caption", disable=disable) as bar:
            for i in range(num_batches):
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                loss = self._step(idx, epoch, i + 1, num_batches, learning_rate)
                self.history["iteration_loss"].append(loss)
                total_loss += loss * len(idx)
                bar.update(len(idx))
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

            val_loss, score, metrics = self._evaluate(epoch, learning_rate)
            bar.set_postfix(
                {"train_loss": f"{total_loss / K:.4f}"}
                | ({} if val_loss is None else {"val_loss": f"{val_loss:.4f}"})
                | ({self.score_label: f"{score:.4f}"} if self.score_name == "score_fn" and metrics is None else {})
                | {name: f"{value:.4f}" for name, value in (metrics or {}).items()}
            )

        improved = score is not None and (
            self.best_score is None or (score > self.best_score if self.higher_is_better else score < self.best_score)
        )
        if improved:
            self.best_score, self.best_epoch = score, epoch
            if self.keep_best:
                self.best_params = {name: value.copy() for name, value in self.model.params.items()}
        self.epoch = epoch
        for key, value in (
            ("epoch", epoch),
            ("iterations", len(self.history["iteration_loss"])),
            ("learning_rate", learning_rate),
            ("train_loss", total_loss / K),
            ("val_loss", val_loss),
            ("score", score),
            ("metrics", metrics),
            ("epoch_time", time.perf_counter() - start_time),
        ):
            self.history[key].append(value)
        if self.out_dir is not None:
            self._save_checkpoint(improved)

    @property
    def score_label(self) -> str | None:
        """What the score is called in bars and plots: ``score_key``, "score" for a plain score_fn, or None."""
        if self.score_name != "score_fn":
            return None
        return self.score_key or "score"

    def _evaluate(self, epoch: int, learning_rate: float) -> tuple[float | None, float | None, dict[str, float] | None]:
        """Check the parameters after an epoch, then compute the validation loss, the score and named metrics."""
        for name, value in self.model.params.items():
            # The last update of an epoch can overflow a weight with no loss left to show it.
            if not np.isfinite(value).all():
                raise TrainingDiverged(
                    f"parameter {name} holds NaN or infinite values after epoch {epoch}. {self._advice(learning_rate)}",
                    epoch,
                    None,
                    None,
                )
        val_loss = None if self._val is None else self._mean_loss(self._val)
        if val_loss is not None and not math.isfinite(val_loss):
            raise TrainingDiverged(
                f"validation loss is {val_loss} after epoch {epoch}. {self._advice(learning_rate)}",
                epoch,
                None,
                val_loss,
            )
        if self.score_name != "score_fn":
            return val_loss, val_loss, None
        result = self.score_fn(self.model)
        metrics = None
        if isinstance(result, Mapping):
            if self.score_key not in result:
                raise ValueError(
                    f"score_fn returned {sorted(result)} after epoch {epoch}; score_key {self.score_key!r} must "
                    "name one of them"
                )
            metrics = {str(name): float(value) for name, value in result.items() if _is_real(value)}
            result = result[self.score_key]
        if not _is_real(result) or not math.isfinite(result):
            raise ValueError(f"score_fn returned {result!r} after epoch {epoch}; it must return a finite number")
        return val_loss, float(result), metrics

    def _step(self, idx: np.ndarray, epoch: int, iteration: int, num_batches: int, learning_rate: float) -> float:
        """One update on the captions ``idx``; returns the minibatch loss."""
        features, captions = _batch(self._train, idx)
        loss, grads = self.model.loss(features, captions, rng=self._rng)  # the trainer's generator: resumable
        if self.config.max_grad_norm is None:
            norm = global_norm(grads)
        else:
            norm = clip_grad_norm(grads, self.config.max_grad_norm)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise TrainingDiverged(
                f"training diverged at epoch {epoch}, iteration {iteration}/{num_batches}: loss {loss}, "
                f"gradient norm {norm}. {self._advice(learning_rate)}",
                epoch,
                iteration,
                loss,
            )
        params = self.model.params
        for name, w in params.items():
            params[name], self.optim_configs[name] = self._rule(w, grads[name], self.optim_configs[name])
        return loss

    def _advice(self, learning_rate: float) -> str:
        if self.out_dir is None:
            kept = "Nothing was saved (no out_dir)."
        elif self.epoch == 0:
            kept = f"No epoch had completed, so nothing was written to {self.out_dir}."
        else:
            kept = f"The last good checkpoint (epoch {self.epoch}) in {self.out_dir} is untouched."
        clip = "" if self.config.max_grad_norm is not None else " or set max_grad_norm to clip gradients"
        return f"Lower the learning rate (now {learning_rate:g}){clip}. {kept}"

    def _mean_loss(self, split: _Split) -> float:
        """The loss per caption over a whole split, in batches of ``val_batch_size``, in order."""
        batch_size = self.config.val_batch_size or self.config.batch_size
        K = len(split.captions)
        total = 0.0
        for start in range(0, K, batch_size):
            idx = np.arange(start, min(start + batch_size, K))
            loss, _ = self.model.loss(*_batch(split, idx), compute_grads=False)
            total += loss * len(idx)
        return total / K

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, improved: bool) -> None:
        """Write this epoch's files; the state file first, as it alone decides where a resume starts."""
        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"param/{name}": value for name, value in self.model.params.items()}
        arrays |= {f"best/{name}": value for name, value in (self.best_params or {}).items()}
        optimizer = {}  # JSON part of each parameter's optimizer config: hyper-parameters and Adam's step count
        for name, param_config in self.optim_configs.items():
            optimizer[name] = {}
            for key, value in param_config.items():
                if isinstance(value, np.ndarray):
                    arrays[f"optim/{name}/{key}"] = value
                else:
                    optimizer[name][key] = value
        state = {
            "epoch": self.epoch,
            "config": asdict(self.config),
            "model_config": self.model.config(),
            "score_name": self.score_name,
            "score_key": self.score_key,
            "higher_is_better": self.higher_is_better,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "rng_state": self._rng.bit_generator.state,
            "optimizer": optimizer,
            "history": self.history,
        }
        arrays["__format__"] = np.array(STATE_FORMAT)
        arrays["__state__"] = np.array(json.dumps(state, allow_nan=False))
        atomic_write(out / STATE_FILE, lambda f: np.savez(f, **arrays))
        self.model.save(out / MODEL_FILE)
        if improved:
            self.model.save(out / BEST_FILE)
        text = json.dumps(self.history, indent=1, allow_nan=False)
        atomic_write(out / HISTORY_FILE, lambda f: f.write(text.encode()))
        if self.config.plot:
            plot_history(self.history, out / PLOT_FILE, score_label=self.score_label)

    @classmethod
    def resume(
        cls,
        out_dir: str | os.PathLike,
        train: CaptionData,
        val: CaptionData | None = None,
        *,
        model: Any | None = None,
        config: TrainConfig | None = None,
        score_fn: ScoreFn | None = None,
        higher_is_better: bool | None = None,
        score_key: str | None = None,
    ) -> Trainer:
        """Continue the run checkpointed in ``out_dir`` from its last completed epoch.

        With the same data and config (``num_epochs`` aside), the continued run is bit for bit the run that was
        never interrupted: same parameters, same history except ``epoch_time``.

        Args:
            out_dir: a directory a :class:`Trainer` with ``out_dir`` wrote.
            train, val: the data of the run.
            model: the model to continue training, in place; None: the model saved in ``model.npz``.
                Its configuration must be the checkpoint's; its parameters are replaced by the checkpoint's.
            config: None: the checkpoint's. A different one applies from the next epoch (e.g. more epochs or a
                new learning rate); the update rule must stay, its state carries over.
            score_fn, higher_is_better, score_key: as in :class:`Trainer`; a run that chose its best by a
                ``score_fn`` needs it again (functions are not saved); ``higher_is_better`` and ``score_key``
                default to the saved ones.

        Raises:
            FileNotFoundError: no checkpoint in ``out_dir``.
            ValueError: the checkpoint is unreadable or does not fit the model, config or score given.
        """
        out_dir = Path(out_dir)
        arrays, state = _read_state(out_dir / STATE_FILE)
        if model is None:
            model = load_model(out_dir / MODEL_FILE)
        if model.config() != state["model_config"]:
            raise ValueError(
                f"{out_dir}: the checkpoint is of a model {state['model_config']}, the model given is {model.config()}"
            )
        try:
            saved_config = TrainConfig(**state["config"])
        except TypeError as exc:
            raise ValueError(
                f"{out_dir}: the checkpoint's config does not fit this version's TrainConfig: {exc}"
            ) from exc
        config = saved_config if config is None else config
        if config.update_rule != saved_config.update_rule:
            raise ValueError(
                f"{out_dir}: the run used update rule {saved_config.update_rule!r}, whose state cannot continue as "
                f"{config.update_rule!r}; start a new Trainer from the loaded model instead"
            )
        saved_key = state["score_key"]
        if score_fn is not None:
            higher_is_better = state["higher_is_better"] if higher_is_better is None else higher_is_better
            score_key = saved_key if score_key is None else score_key
        trainer = cls(
            model,
            train,
            val,
            config,
            out_dir,
            score_fn=score_fn,
            higher_is_better=higher_is_better,
            score_key=score_key,
        )
        saved = (state["score_name"], saved_key, state["higher_is_better"])
        if (trainer.score_name, trainer.score_key, trainer.higher_is_better) != saved:
            raise ValueError(
                f"{out_dir}: the run chose its best epoch by {state['score_name'] or 'nothing'} "
                f"(score_key={saved_key!r}, higher_is_better={state['higher_is_better']}), the resumed one would use "
                f"{trainer.score_name or 'nothing'} (score_key={trainer.score_key!r}, "
                f"higher_is_better={trainer.higher_is_better}): pass the same validation data and score_fn"
            )
        trainer._restore(out_dir, arrays, state)
        return trainer

    def _restore(self, out_dir: Path, arrays: dict[str, np.ndarray], state: dict[str, Any]) -> None:
        def group(prefix: str) -> dict[str, np.ndarray]:
            found = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
            for name, value in found.items():
                if name in self.model.params and value.shape != self.model.params[name].shape:
                    raise ValueError(
                        f"{out_dir}: {prefix}{name} has shape {value.shape}, the model's is "
                        f"{self.model.params[name].shape}"
                    )
            return found

        params = group("param/")
        if params.keys() != self.model.params.keys():
            raise ValueError(
                f"{out_dir}: the checkpoint holds parameters {sorted(params)}, the model has "
                f"{sorted(self.model.params)}"
            )
        self.model.params = {name: value.astype(self.model.dtype, copy=False) for name, value in params.items()}
        best = group("best/")
        self.best_params = best or None
        self.optim_configs = {name: dict(state["optimizer"][name]) for name in self.model.params}
        for key, value in arrays.items():
            if key.startswith("optim/"):
                name, state_key = key[len("optim/") :].split("/", 1)
                self.optim_configs[name][state_key] = value
        self.epoch = state["epoch"]
        self.history = state["history"]
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self._rng.bit_generator.state = state["rng_state"]


def plot_history(history: History, path: str | os.PathLike, score_label: str | None = None) -> Path:
    """Draw the loss curves of a training history to a PNG file (written atomically); returns the path.

    Minibatch losses as a thin line, per-epoch train and validation losses as points at the end of each epoch,
    and, with ``score_label``, the per-epoch score on a second axis below (every named metric, when the score
    function returned several).
    """
    # Imported here: matplotlib is slow to import and only plots need it. The Figure API draws with Agg without
    # pyplot, so the caller's matplotlib backend is left alone.
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(8, 6 if score_label else 4), layout="constrained")
    axes = fig.subplots(2 if score_label else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    iterations = np.arange(1, len(history["iteration_loss"]) + 1)
    ax.plot(iterations, history["iteration_loss"], lw=0.7, alpha=0.5, label="minibatch loss")
    ax.plot(history["iterations"], history["train_loss"], "o-", label="train loss (epoch mean)")
    val = [(x, y) for x, y in zip(history["iterations"], history["val_loss"], strict=True) if y is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "s-", label="validation loss")
    ax.set_ylabel("loss per caption")
    ax.legend()
    if score_label:
        metrics = [(x, m) for x, m in zip(history["iterations"], history["metrics"], strict=True) if m]
        if metrics:
            for name in metrics[-1][1]:
                points = [(x, m[name]) for x, m in metrics if name in m]
                axes[1].plot(*zip(*points, strict=True), "d-", label=name)
            axes[1].legend()
            axes[1].set_ylabel(f"validation scores (best by {score_label})")
        else:
            scores = [(x, y) for x, y in zip(history["iterations"], history["score"], strict=True) if y is not None]
            if scores:
                axes[1].plot(*zip(*scores, strict=True), "d-", color="C3")
            axes[1].set_ylabel(score_label)
    axes[-1].set_xlabel("iteration")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path


# ---------------------------------------------------------------------- helpers


def _prepare_split(model: Any, data: CaptionData, name: str) -> _Split:
    """Check ``data`` against the model.

    The features are not cast to the model's dtype here: the model casts each batch, which costs little, while a
    float16 grid cast whole would double its memory (Flickr8k's train grid: 1.2 GB as float16, 2.5 GB float32).
    """
    if not isinstance(data, CaptionData):
        raise ValueError(f"{name} must be a CaptionData, got {type(data).__name__}")
    expected = model.feature_shape
    if data.features.shape[1:] != expected:
        hint = ""
        if data.features.ndim != 1 + len(expected):
            hint = " (an AttentionCaptioner reads grid features, store.load_grid; a CaptioningRNN pooled ones)"
        raise ValueError(
            f"{name} features have shape {data.features.shape}, the model reads (M, {', '.join(map(str, expected))})"
            f"{hint}"
        )
    if data.captions.max() >= model.vocab_size:
        raise ValueError(
            f"{name} captions hold token id {data.captions.max()}, "
            f"outside the model's vocabulary [0, {model.vocab_size})"
        )
    return _Split(data.features, data.captions, data.image_idxs)


def _batch(split: _Split, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) or (N, L, D) and captions (N, T) of the captions ``idx``."""
    return split.features[split.image_idxs[idx]], split.captions[idx]


def _read_state(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and JSON state of a trainer state file, never unpickling."""
    if not path.is_file():
        raise FileNotFoundError(f"no trainer checkpoint {path}: train with out_dir={str(path.parent)!r} first")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        if str(arrays.pop("__format__", "")) != STATE_FORMAT:
            raise ValueError(f"not a trainer state file (expected format {STATE_FORMAT!r})")
        state = json.loads(str(arrays.pop("__state__")))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable trainer checkpoint: {exc}") from exc
    return arrays, state


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
