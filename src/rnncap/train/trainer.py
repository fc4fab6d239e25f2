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

The best epoch is chosen by a :class:`~rnncap.train.scoring.Scorer`: the validation loss by default, or a
``score_fn``. At the end of every epoch the files of :mod:`rnncap.train.checkpoint` go to ``out_dir``, and with
``config.plot`` the loss curves to ``loss.png`` (:func:`rnncap.report.plots.plot_history`), the state file last,
as the commit of the epoch: a kill at any instant leaves the previous checkpoint or the new one. If the loss or a
gradient turns NaN or infinite, or the loss jumps far above its level (:mod:`rnncap.train.divergence`), training
stops with :class:`TrainingDiverged` before the update and before anything is written, so the files of the last
good epoch stay as they were.

Data-parallel training: with a ``communicator`` of P processes (:mod:`rnncap.train.distributed`; torch.distributed
in :mod:`rnncap.apps.distributed`, what ``torchrun ... rnncap train`` uses) every process runs this loop on the same
data and seed, computes its block of every global batch of ``batch_size`` captions, and the loss and gradients are
summed over the processes before one identical update in each: the run is, to float32 rounding, the run of one
process with the same ``batch_size``, dropout and shuffling included, and its checkpoints resume at any number of
processes. Validation is split over the processes the same way; process 0 alone scores the model (its ``score_fn``)
and tells the others, writes the run's files and shows progress, the others waiting at a barrier.

References: Stanford CS231n assignment 3, ``captioning_solver.py`` (update rules per parameter, ``lr_decay`` per
epoch); karpathy/nanoGPT ``train.py`` (config dataclass, checkpoint and resume).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Generator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from tqdm.auto import tqdm

from rnncap.backend import array_module, is_array, to_device
from rnncap.models import CaptionModel
from rnncap.nn.dropout import DropoutDraws
from rnncap.optim import clip_grad_norm, get_update_rule, global_norm, resolve_hyperparameters
from rnncap.train.checkpoint import (
    PLOT_FILE,
    STATE_FILE,
    History,
    TrainerState,
    check_model,
    check_out_dir,
    check_scorer,
    continued_config,
    model_from_state,
    new_history,
    read_state,
    scorer_record,
    write_run_files,
)
from rnncap.train.config import TrainConfig
from rnncap.train.data import Batch, CaptionData, take_rows
from rnncap.train.distributed import (
    SINGLE_PROCESS,
    Communicator,
    GradientReducer,
    block,
    check_communicator,
    check_same_run,
    run_digest,
    sum_over_processes,
)
from rnncap.train.divergence import TrainingDiverged, divergence_reason, know_nothing_loss
from rnncap.train.rewards import CiderD
from rnncap.train.scoring import Score, ScoreFn, Scorer, choose_scorer
from rnncap.train.scst import SCST_HISTORY, reward_index, scst_step


class Trainer:
    """Trains a :class:`~rnncap.models.CaptionModel` with minibatch gradient descent; see the module docstring."""

    def __init__(
        self,
        model: CaptionModel,
        train: CaptionData,
        val: CaptionData | None = None,
        config: TrainConfig | None = None,
        out_dir: str | os.PathLike | None = None,
        *,
        scorer: Scorer | None = None,
        score_fn: ScoreFn | None = None,
        higher_is_better: bool | None = None,
        score_key: str | None = None,
        communicator: Communicator | None = None,
    ) -> None:
        """Set up a run; nothing is trained or written until :meth:`train`.

        Args:
            model: the model to train, in place.
            train: the training split.
            val: the validation split; its mean loss is reported every epoch and is the default score.
            config: the run's settings; default ``TrainConfig()``.
            out_dir: where checkpoints, history and plot go; None: keep nothing on disk.
            scorer: what chooses the best epoch (:mod:`rnncap.train.scoring`); default: ``score_fn`` if given,
                else the validation loss.
            score_fn: ``score_fn(model) -> float`` called after every epoch to choose the best epoch (e.g. BLEU
                of sampled captions), short for ``scorer=MetricScorer(score_fn, higher_is_better, score_key)``.
                It may instead return several numbers by name (e.g. ``{"BLEU-4": .., "CIDEr": ..}``): all go
                into the history, ``score_key`` chooses.
            higher_is_better: whether a larger ``score_fn`` value is better; required with ``score_fn``.
            score_key: with a ``score_fn`` that returns a mapping, the entry that chooses the best epoch.
            communicator: the processes of a data-parallel run (:mod:`rnncap.train.distributed`), each of which
                builds its Trainer with the same arguments; None: this process alone. ``score_fn`` is called in
                process 0 only, ``out_dir`` written by process 0 only.

        Raises:
            ValueError: data that does not fit the model, a score set-up that cannot work, or a data-parallel run
                with more processes than captions per batch, or with self-critical training.
        """
        self.config = TrainConfig() if config is None else config
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        self.model = model
        self.train_data = _check_split(model, train, "train")
        self.val_data = None if val is None else _check_split(model, val, "val")
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            check_out_dir(self.out_dir)  # now, not after the first epoch
        self.scorer = choose_scorer(val is not None, scorer, score_fn, higher_is_better, score_key)
        self.keep_best = self.scorer is not None if self.config.keep_best is None else self.config.keep_best
        if self.keep_best and self.scorer is None:
            raise ValueError("keep_best needs a score: pass validation data or a score_fn")

        self.communicator = SINGLE_PROCESS if communicator is None else check_communicator(communicator)
        self._check_parallel()
        self._reducer: GradientReducer | None = None  # the gradients' buffer, made at the first parallel step

        self._rule = get_update_rule(self.config.update_rule)
        self.optim_configs: dict[str, dict[str, Any]] = {name: {} for name in model.params}
        self._rng = np.random.default_rng(self.config.seed)
        self.epoch = 0  # epochs completed
        self.history = new_history()
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_params: dict[str, np.ndarray] | None = None
        # After train() swaps the best parameters in, the last ones wait here for a further train() call.
        self._last_params: dict[str, np.ndarray] | None = None
        self._resumed_from: TrainerState | None = None  # set by resume: the run's files are written again from it
        self._rewards: CiderD | None = None
        if self.config.scst is not None:  # self-critical training: rewards against each photo's own captions
            self._rewards = reward_index(self.train_data, model.vocab_size, model.end_id, self.config.scst)
            self.history |= {key: [] for key in SCST_HISTORY}

    def _check_parallel(self) -> None:
        """Refuse a data-parallel run that cannot give every process a share of the work."""
        world = self.communicator.world_size
        if world == 1:
            return
        if self.config.scst is not None:
            # Its captions are sampled photo by photo from the generator, for the process's photos only: a block of
            # a global batch would sample other captions than one process does. Not yet drawn per global batch.
            raise ValueError(
                f"self-critical training runs in one process, not in {world}: its sampled captions are not drawn "
                "per global batch yet (run it without torchrun)"
            )
        if world > self.config.batch_size:
            raise ValueError(
                f"{world} processes cannot share batches of {self.config.batch_size} captions: the batch size is "
                f"the global one, split over the processes; use a batch size of at least {world}"
            )
        if len(self.train_data) < world:
            raise ValueError(f"{world} processes cannot share {len(self.train_data)} training captions")

    # ------------------------------------------------------------------ training

    @property
    def stopped_early(self) -> bool:
        """Whether ``patience`` epochs have passed without a better score (never, in a run without a score)."""
        patience, best = self.config.patience, self.best_epoch
        return patience is not None and best is not None and self.epoch - best >= patience

    def train(self) -> History:
        """Train up to ``config.num_epochs`` (counting epochs done before a resume), or until early stopping.

        With ``keep_best`` the model ends holding the parameters of the best epoch. Calling ``train()`` again
        (after raising ``config.num_epochs``) continues from the last epoch's parameters, not the best.

        Returns:
            The history, lists of plain numbers: ``iteration_loss`` (one per minibatch); per epoch ``epoch``,
            ``iterations`` (minibatches so far), ``learning_rate``, ``train_loss``, ``val_loss``, ``score``
            (None where there is none), ``metrics`` (a score_fn's numbers by name, or None) and ``epoch_time``
            (seconds; the only entry that differs between two runs with the same seed).

        Raises:
            TrainingDiverged: the loss, a gradient or a parameter became non-finite.
        """
        if self._last_params is not None:
            self.model.params, self._last_params = self._last_params, None
        if self.communicator.world_size > 1:
            self._check_processes_agree()
            self._reducer = None  # made again at the first step: the parameters may have moved to another device
        if self._resumed_from is not None and self.out_dir is not None:
            if self.communicator.rank == 0:
                # A kill may have left files one checkpoint ahead of the state read: write them again from it.
                draw = self._draw if self.config.plot else None
                resumed = self._resumed_from
                write_run_files(self.out_dir, resumed, self.model, True, draw, self.config.keep_epochs)
            self._resumed_from = None
            self.communicator.barrier()
        while self.epoch < self.config.num_epochs and not self.stopped_early:
            self._train_epoch()
        if self.keep_best and self.best_params is not None:
            self._last_params = self.model.params
            self.model.params = {name: value.copy() for name, value in self.best_params.items()}
        return self.history

    def _train_epoch(self) -> None:
        cfg, epoch = self.config, self.epoch + 1
        hyper = resolve_hyperparameters(cfg.update_rule, cfg.optim_config)
        learning_rate = hyper["learning_rate"] * cfg.lr_decay**self.epoch
        for param_config in self.optim_configs.values():
            param_config.update(hyper, learning_rate=learning_rate)

        start_time = time.perf_counter()
        disable = None if cfg.progress is None else not cfg.progress
        disable = True if self.communicator.rank != 0 else disable  # one bar per run, not per process
        scst = cfg.scst is not None
        K = len(self.train_data.features) if scst else len(self.train_data)
        unit = "photo" if scst else "caption"
        with tqdm(total=K, desc=f"epoch {epoch}/{cfg.num_epochs}", unit=unit, disable=disable) as bar:
            run = self._run_scst_batches if scst else self._run_batches
            train_loss = run(epoch, learning_rate, bar)
            val_loss, score = self._evaluate(epoch, learning_rate)
            bar.set_postfix(_summary(train_loss, val_loss, score, self.scorer))

        improved = False
        if score is not None and self.scorer is not None and self.scorer.better(score.value, self.best_score):
            improved = True
            self.best_score, self.best_epoch = score.value, epoch
            # Kept with or without keep_best: the state file holds them, so that best.npz can be written again.
            self.best_params = {name: value.copy() for name, value in self.model.params.items()}
        self.epoch = epoch
        for key, value in (
            ("epoch", epoch),
            ("iterations", len(self.history["iteration_loss"])),
            ("learning_rate", learning_rate),
            ("train_loss", train_loss),
            ("val_loss", val_loss),
            ("score", None if score is None else score.value),
            ("metrics", None if score is None else score.metrics),
            ("epoch_time", time.perf_counter() - start_time),
        ):
            self.history[key].append(value)
        if self.out_dir is not None:
            if self.communicator.rank == 0:
                self._save_checkpoint(improved)
            self.communicator.barrier()

    def _run_batches(self, epoch: int, learning_rate: float, bar: Any) -> float:
        """One pass over the training captions in a fresh order; returns the mean loss per caption.

        In a data-parallel run each process reads its block of every batch (the same permutation in all of them).
        """
        batch_size, K = self.config.batch_size, len(self.train_data)
        order = self._rng.permutation(K)
        num_batches = math.ceil(K / batch_size)
        total_loss = 0.0
        part = (self.communicator.rank, self.communicator.world_size)
        # The permutation is drawn before the batches and the reading thread never touches the generator, so a
        # streamed split trains bit for bit as one in memory (closing stops the thread if a step raises).
        with _closing_batches(self.train_data, order, batch_size, part) as batches:
            for i, (_, features, captions) in enumerate(batches):
                batch = order[i * batch_size : (i + 1) * batch_size]  # (n,) the global batch
                step = _Step(epoch, i + 1, num_batches, learning_rate, self.train_data.captions[batch])
                loss = self._step(features, captions, step)
                self.history["iteration_loss"].append(loss)
                total_loss += loss * len(batch)
                bar.update(len(batch))
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        return total_loss / K

    def _run_scst_batches(self, epoch: int, learning_rate: float, bar: Any) -> float:
        """One self-critical pass over the training photos in a fresh order (:mod:`rnncap.train.scst`); records
        each step's mean reward and baseline; returns the mean surrogate loss per photo."""
        assert self.config.scst is not None and self._rewards is not None  # only in an SCST run
        batch_size, M = self.config.batch_size, len(self.train_data.features)
        order = self._rng.permutation(M)
        num_batches = math.ceil(M / batch_size)
        totals = np.zeros(3)  # loss, reward, baseline, each times photos
        for i in range(num_batches):
            photos = order[i * batch_size : (i + 1) * batch_size]
            loss, grads, stats = scst_step(
                self.model,
                take_rows(self.train_data.features, photos),
                photos,
                self._rewards,
                self.config.scst,
                self._rng,
            )
            norm = self._clipped_norm(grads)
            if not (math.isfinite(loss) and math.isfinite(norm)):  # a surrogate loss has no level to jump from
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch}, iteration {i + 1}/{num_batches}: loss {loss}, gradient "
                    f"norm {norm}. {self._advice(learning_rate)}",
                    epoch,
                    i + 1,
                    loss,
                )
            self._update(grads)
            for key, value in zip(("iteration_loss", *SCST_HISTORY[:2]), (loss, *stats), strict=True):
                self.history[key].append(value)
            totals += np.array([loss, *stats]) * len(photos)
            bar.update(len(photos))
            bar.set_postfix(reward=f"{stats.reward:.3f}", baseline=f"{stats.baseline:.3f}", refresh=False)
        self.history["train_reward"].append(totals[1] / M)
        self.history["train_baseline"].append(totals[2] / M)
        return float(totals[0] / M)

    def _clipped_norm(self, grads: dict[str, np.ndarray]) -> float:
        """The gradients' global norm before clipping, clipping them in place to ``max_grad_norm`` when set."""
        if self.config.max_grad_norm is None:
            return global_norm(grads)
        return clip_grad_norm(grads, self.config.max_grad_norm)

    def _update(self, grads: dict[str, np.ndarray]) -> None:
        """One step of the update rule on every parameter."""
        params = self.model.params
        for name, w in params.items():
            params[name], self.optim_configs[name] = self._rule(w, grads[name], self.optim_configs[name])

    def _evaluate(self, epoch: int, learning_rate: float) -> tuple[float | None, Score | None]:
        """Check the parameters after an epoch, then compute the validation loss and the score."""
        for name, value in self.model.params.items():
            # The last update of an epoch can overflow a weight with no loss left to show it.
            if not array_module(value).isfinite(value).all():
                raise TrainingDiverged(
                    f"parameter {name} holds NaN or infinite values after epoch {epoch}. {self._advice(learning_rate)}",
                    epoch,
                    None,
                    None,
                )
        val_loss = None if self.val_data is None else self._mean_loss(self.val_data)
        if val_loss is not None and not math.isfinite(val_loss):
            raise TrainingDiverged(
                f"validation loss is {val_loss} after epoch {epoch}. {self._advice(learning_rate)}",
                epoch,
                None,
                val_loss,
            )
        if self.scorer is None:
            return val_loss, None
        # Scored once, by process 0 (a score_fn decodes the validation photos): every process then chooses the
        # same best epoch and stops at the same one.
        score = self.scorer.score(self.model, epoch, val_loss) if self.communicator.rank == 0 else None
        return val_loss, self.communicator.broadcast(score)

    def _step(self, features: np.ndarray, captions: np.ndarray, step: _Step) -> float:
        """One update on a minibatch, features (N, D) or (N, L, D) and captions (N, T): this process's block of
        the global batch ``step.captions`` (n, T) (all of it in one process); returns the global batch's loss."""
        if self.communicator.world_size == 1:
            loss, grads = self.model.loss(features, captions, rng=self._rng)  # the trainer's generator: resumable
        else:
            loss, grads = self._parallel_loss(features, captions, len(step.captions))
        norm = self._clipped_norm(grads)
        know_nothing = know_nothing_loss(step.captions, self.model.null_id, self.model.vocab_size)
        reason = divergence_reason(loss, norm, self.history["iteration_loss"], know_nothing)
        if reason is not None:  # the rule and its factor: rnncap.train.divergence
            raise TrainingDiverged(
                f"training diverged at epoch {step.epoch}, iteration {step.iteration}/{step.num_batches}: {reason}. "
                f"{self._advice(step.learning_rate)}",
                step.epoch,
                step.iteration,
                loss,
            )
        self._update(grads)
        return loss

    def _parallel_loss(self, features: np.ndarray, captions: np.ndarray, n: int) -> tuple[float, dict[str, Any]]:
        """The loss and gradients of a global batch of ``n`` captions, of which this process holds ``captions``
        (its :func:`~rnncap.train.distributed.block`), summed over the processes."""
        comm = self.communicator
        if self._reducer is None:
            self._reducer = GradientReducer(self.model.params, comm)
        rows = block(n, comm.rank, comm.world_size)
        grads: dict[str, Any] = {}
        loss = 0.0
        if len(captions):  # the dropout masks of these rows of the global batch, as one process would draw them
            loss, grads = self.model.loss(features, captions, rng=DropoutDraws(self._rng, rows, n))
        global_loss, global_grads = self._reducer.reduce(loss, grads, len(captions) / n)
        if n < comm.world_size:
            # A process without captions drew no dropout masks: it takes the generator of process 0, which has.
            self._rng.bit_generator.state = comm.broadcast(self._rng.bit_generator.state)
        return global_loss, global_grads

    def _advice(self, learning_rate: float) -> str:
        if self.out_dir is None:
            kept = "Nothing was saved (no out_dir)."
        elif self.epoch == 0:
            kept = f"No epoch had completed, so nothing was written to {self.out_dir}."
        else:
            kept = f"The last good checkpoint (epoch {self.epoch}) in {self.out_dir} is untouched."
        clip = "" if self.config.max_grad_norm is not None else " or clip the gradients (max_grad_norm, --clip)"
        return f"Lower the learning rate (now {learning_rate:g}){clip}. {kept}"

    def _mean_loss(self, split: CaptionData) -> float:
        """The loss per caption over a whole split, in batches of ``val_batch_size``, in order (each process of a
        data-parallel run computing its block of every batch)."""
        batch_size = self.config.val_batch_size or self.config.batch_size
        K = len(split)
        total = 0.0
        part = (self.communicator.rank, self.communicator.world_size)
        with _closing_batches(split, np.arange(K), batch_size, part) as batches:
            for idx, features, captions in batches:
                if len(idx):
                    loss, _ = self.model.loss(features, captions, compute_grads=False)
                    total += loss * len(idx)
        if self.communicator.world_size > 1:
            (total,) = sum_over_processes(self.communicator, [total])
        return total / K

    def _check_processes_agree(self) -> None:
        """Raise ValueError in every process unless all of them start from the same run: the same data, config,
        epoch, generator and parameters (a process that read another run folder, or other data, would otherwise
        train on silently apart)."""
        facts = {
            "epoch": self.epoch,
            "settings": asdict(self.config) | {"progress": None},  # whether a bar shows is each process's own
            "shuffling generator": self._rng.bit_generator.state,
        }
        arrays = {"parameters": list(self.model.params.values())}
        for name, split in (("training", self.train_data), ("validation", self.val_data)):
            if split is not None:  # the captions and their images (the features are too large to read for it)
                arrays[f"{name} captions"] = [split.captions, split.image_idxs, np.array(split.features.shape)]
        hint = "Every process must be given the same data, settings and run folder (on several machines: a folder "
        hint += "on a file system they share)."
        check_same_run(self.communicator, run_digest(arrays, facts), hint)

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, improved: bool) -> None:
        assert self.out_dir is not None  # only called with one
        score_name, score_key, higher_is_better = scorer_record(self.scorer)
        state = TrainerState(
            epoch=self.epoch,
            config=asdict(self.config),
            model_config=self.model.config(),
            score_name=score_name,
            score_key=score_key,
            higher_is_better=higher_is_better,
            best_score=self.best_score,
            best_epoch=self.best_epoch,
            rng_state=dict(self._rng.bit_generator.state),
            history=self.history,
            params=self.model.params,
            best_params=self.best_params,
            optim_configs=self.optim_configs,
            word_to_idx=self.model.word_to_idx,
            metadata=self.model.metadata,
        )
        draw = self._draw if self.config.plot else None
        write_run_files(self.out_dir, state, self.model, improved, draw, self.config.keep_epochs)

    def _draw(self) -> None:
        assert self.out_dir is not None  # only called with one
        # Imported here: drawing is presentation (rnncap.report), asked for by config.plot, and loads matplotlib.
        from rnncap.report.plots import plot_history

        label = None if self.scorer is None else self.scorer.label
        plot_history(self.history, self.out_dir / PLOT_FILE, score_label=label)

    @classmethod
    def resume(
        cls,
        out_dir: str | os.PathLike,
        train: CaptionData,
        val: CaptionData | None = None,
        *,
        model: CaptionModel | None = None,
        config: TrainConfig | None = None,
        scorer: Scorer | None = None,
        score_fn: ScoreFn | None = None,
        higher_is_better: bool | None = None,
        score_key: str | None = None,
        communicator: Communicator | None = None,
    ) -> Trainer:
        """Continue the run checkpointed in ``out_dir`` from its last completed epoch.

        With the same data and config (``num_epochs`` aside), the continued run is bit for bit the run that was
        never interrupted: same parameters, same history except ``epoch_time``. Only the state file is read (the
        commit of the last checkpoint, see :mod:`rnncap.train.checkpoint`); the first :meth:`train` writes the
        folder's other files again from it, so that a kill at any instant of a checkpoint costs nothing.

        Args:
            out_dir: a directory a :class:`Trainer` with ``out_dir`` wrote.
            train, val: the data of the run.
            model: the model to continue training, in place; None: the checkpoint's, rebuilt from the state file.
                Its configuration and vocabulary must be the checkpoint's; its parameters are replaced by the
                checkpoint's.
            config: None: the checkpoint's. A different one applies from the next epoch (e.g. more epochs or a
                new learning rate); the update rule must stay, its state carries over.
            scorer, score_fn, higher_is_better, score_key: as in :class:`Trainer`; a run that chose its best by a
                ``score_fn`` needs it again (functions are not saved); ``higher_is_better`` and ``score_key``
                default to the saved ones.
            communicator: as in :class:`Trainer`: a run continues on any number of processes, whatever number
                wrote the checkpoint (every process reads it).

        Raises:
            FileNotFoundError: no checkpoint in ``out_dir``.
            ValueError: the checkpoint is unreadable or does not fit the model, config or score given.
        """
        out_dir = Path(out_dir)
        state = read_state(out_dir / STATE_FILE)
        model = model_from_state(state, out_dir) if model is None else model
        check_model(state, model, out_dir)
        config = continued_config(state, config, out_dir)
        if score_fn is not None:
            higher_is_better = state.higher_is_better if higher_is_better is None else higher_is_better
            score_key = state.score_key if score_key is None else score_key
        trainer = cls(
            model,
            train,
            val,
            config,
            out_dir,
            scorer=scorer,
            score_fn=score_fn,
            higher_is_better=higher_is_better,
            score_key=score_key,
            communicator=communicator,
        )
        check_scorer(state, trainer.scorer, out_dir)
        trainer._restore(state)
        if state.word_to_idx is None:  # format 1: what it lacks is the model's, so that it is rewritten as format 2
            state = replace(state, word_to_idx=model.word_to_idx, metadata=model.metadata)
        trainer._resumed_from = state
        return trainer

    def _restore(self, state: TrainerState) -> None:
        """Take up the checkpointed run: parameters, optimizer state, history, best epoch, shuffling generator; the
        arrays (NumPy in the file) onto the model's device."""
        device = self.model.device
        self.model.params = {
            name: to_device(value.astype(self.model.dtype, copy=False), device) for name, value in state.params.items()
        }
        self.best_params = None
        if state.best_params is not None:
            self.best_params = {name: to_device(value, device) for name, value in state.best_params.items()}
        self.optim_configs = {
            name: {key: to_device(value, device) if is_array(value) else value for key, value in config.items()}
            for name, config in state.optim_configs.items()
        }
        self.epoch = state.epoch
        self.history = state.history
        self.best_score, self.best_epoch = state.best_score, state.best_epoch
        self._rng.bit_generator.state = state.rng_state


# ---------------------------------------------------------------------- helpers


def _summary(train_loss: float, val_loss: float | None, score: Score | None, scorer: Scorer | None) -> dict[str, str]:
    """The progress bar's numbers at the end of an epoch: losses, then the score or a score_fn's metrics."""
    shown = {"train_loss": train_loss} | ({} if val_loss is None else {"val_loss": val_loss})
    if score is not None and score.metrics is not None:
        shown |= score.metrics
    elif score is not None and scorer is not None and scorer.label is not None:
        shown[scorer.label] = score.value  # a plain score_fn's number; the validation loss is shown already
    return {name: f"{value:.4f}" for name, value in shown.items()}


def _check_split(model: CaptionModel, data: CaptionData, name: str) -> CaptionData:
    """``data``, checked against the model.

    The features are not cast to the model's dtype here: the model casts each batch, which costs little, while a
    float16 grid cast whole would double its memory (Flickr8k's train grid: 1.2 GB as float16, 2.5 GB float32).
    """
    if not isinstance(data, CaptionData):
        raise ValueError(f"{name} must be a CaptionData, got {type(data).__name__}")
    data.check_fits(model.feature_shape, model.vocab_size, name)
    return data


def _closing_batches(
    split: CaptionData, order: np.ndarray, batch_size: int, part: tuple[int, int]
) -> contextlib.closing[Generator[Batch, None, None]]:
    """``split.batches(order, batch_size, part=part)``, closed when the ``with`` ends: a step that raises stops the
    thread reading ahead."""
    return contextlib.closing(cast(Generator[Batch, None, None], split.batches(order, batch_size, part=part)))


class _Step(NamedTuple):
    """Where a training step is, for its messages, and the captions (n, T) of its whole global batch."""

    epoch: int
    iteration: int
    num_batches: int
    learning_rate: float
    captions: np.ndarray
