"""Train a captioner on a prepared data file, choosing the best epoch by a caption metric: what `rnncap train` runs.

The Trainer (:mod:`rnncap.train`) knows nothing about files of photos or metrics; this module joins the pieces for
the common case::

    result = fit("flickr8k.h5", "runs/flickr8k-lstm", RNNConfig(cell_type="lstm"), TrainConfig(num_epochs=15))
    result.model.beam_search(...)        # the best epoch's model; result.best_path is its file
    fit("flickr8k.h5", "runs/flickr8k-attention", AttentionConfig(), TrainConfig(num_epochs=15))

    fit_run(load_run_config("run.toml"))   # what `rnncap train --config run.toml` does (rnncap.apps.run_config)
    fit(["flickr8k.h5", "coco.h5"], "runs/flickr8k+coco-attention", AttentionConfig())   # several data sets

The model's config chooses the model: an :class:`~rnncap.models.RNNConfig` trains a CaptioningRNN on the file's
pooled features (M, D), an :class:`~rnncap.models.AttentionConfig` an AttentionCaptioner (Show, Attend and Tell)
on its grid features (M, L, D), kept float16 in memory. Its ``input_dim`` (and ``num_locations``) are the data's;
the initial weights are seeded by ``TrainConfig.seed``.

After every epoch the model writes greedy captions for the validation photos and is scored with BLEU-4 and CIDEr-D
(``rnncap.metrics``, no Java); the best epoch is the one with the best ``select_by`` (CIDEr by default, the metric
that tracks human judgement of captions best; "val_loss" chooses by the validation loss instead). The validation
split is ``val_split`` ("dev" by default; a file without a dev split but with a "val" one, as COCO's, is validated
on "val").

Several files (``data`` a list) train one model on all their train splits, with one vocabulary built from the
union of their train captions (:mod:`rnncap.apps.joint`). Each data set is validated on its own split and scored
on its own: the history's metrics hold ``"<data set>/BLEU-4"`` and ``"<data set>/CIDEr"`` of each (e.g.
``"coco2017-karpathy/CIDEr"``), and ``"BLEU-4"`` and ``"CIDEr"`` are their **means** over the data sets, each data
set counting once whatever its size: the best epoch is the one with the best mean (``select_by``). The validation
loss is over all the validation captions together. Running the
same command again on the same ``out_dir`` continues an interrupted run from its last completed epoch, bit for bit,
and only then: a rerun with another data file (by content), another model or other training settings (more epochs
aside) stops and names what differs (:mod:`rnncap.apps.continuation`). The run folder is checked before any work.

Under torchrun (``torchrun --nproc-per-node N -m rnncap train ...``; :mod:`rnncap.apps.distributed`) every process
runs ``fit`` with a ``communicator`` and computes its block of each global batch of ``batch_size`` captions: the
same run as one process's, to float32 rounding (:mod:`rnncap.train.distributed`), which resumes on any number of
processes; process 0 scores the epochs and writes the files.

Besides the Trainer's files, ``out_dir`` gets ``best-float16.npz``: the best model with float16 weights, half
the size, the form a model ships in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rnncap.apps.compat import model_encoder
from rnncap.apps.continuation import (
    data_differences,
    data_fingerprint,
    data_set_differences,
    init_differences,
    init_record,
    model_differences,
    refusal,
    run_settings,
    train_differences,
    vocabulary_difference,
)
from rnncap.apps.joint import (
    DEFAULT_VAL_SPLIT,
    ValPart,
    read_joint,
    read_split,
    val_split_of,
)
from rnncap.apps.paths import model_path
from rnncap.apps.run_config import RunConfig
from rnncap.backend import check_device
from rnncap.data.store import open_store
from rnncap.decode import caption_features
from rnncap.metrics import evaluate
from rnncap.metrics.evaluate import CUT_OFF_ENDINGS
from rnncap.models import AttentionConfig, CaptionModel, ModelConfig, RNNConfig, build_model, load_model
from rnncap.train import BEST_FILE, STATE_FILE, CaptionData, History, MetricScorer, TrainConfig, Trainer
from rnncap.train.checkpoint import RUN_FILES, TrainerState, check_out_dir, model_from_state, read_state
from rnncap.train.distributed import Communicator

SELECT_BY = ("CIDEr", "BLEU-4", "val_loss")
SHIPPED_FILE = "best-float16.npz"


@dataclass
class FitResult:
    """What a run produced: the best model (in memory and its files), its history and how long it took."""

    model: CaptionModel
    history: History
    best_epoch: int | None
    best_path: Path
    shipped_path: Path
    seconds: float
    resumed: bool


def fit(
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: ModelConfig | None = None,
    config: TrainConfig | None = None,
    *,
    train_split: str = "train",
    val_split: str = DEFAULT_VAL_SPLIT,
    select_by: str = "CIDEr",
    resume: bool = True,
    min_count: int = 5,
    init: str | os.PathLike | None = None,
    device: str = "cpu",
    communicator: Communicator | None = None,
) -> FitResult:
    """Train (or continue training) a captioner on a prepared file; see the module docstring.

    Args:
        data: a file written by ``rnncap prepare``, or several (a list): one model on all of them.
        out_dir: the run's folder: checkpoints, ``best.npz``, ``best-float16.npz``, history and plots.
        settings: the new model's config, ``RNNConfig()`` by default. When a run in ``out_dir`` is continued,
            None means the run's, and a config given must be the run's (its sizes but the data's).
        config: the training settings; default ``TrainConfig()``. When a run is continued, None means the
            run's, and a config given must be the run's but for ``num_epochs``, ``patience``, ``progress``,
            ``plot`` and ``keep_epochs`` (:data:`rnncap.apps.continuation.CONTINUABLE`).
        train_split, val_split: split names in ``data``; a file without ``val_split`` "dev" is validated on "val".
        select_by: "CIDEr", "BLEU-4" (greedy captions of ``val_split``; with several files, their mean) or
            "val_loss".
        resume: continue the run already in ``out_dir``; False refuses to touch an existing run.
        min_count: with several files, words seen fewer times in their train captions together become ``<UNK>``
            (one file keeps its own vocabulary).
        init: with ``config.scst`` (:func:`rnncap.train.scst.scst_config`), the trained model to fine-tune
            self-critically: a model file or a shipped model's name. Its settings are the run's (``settings``
            must be None) and the data's vocabulary must be its own. A rerun that names it must name the same
            weights (by content).
        device: where the model trains, ``"cpu"`` or ``"cuda"`` (:mod:`rnncap.backend`); not part of the run:
            a run may continue on the other device.
        communicator: the processes of a data-parallel run (each calls ``fit`` with the same arguments), e.g.
            :func:`rnncap.apps.distributed.torchrun_communicator`'s; None: this process alone. ``config.batch_size``
            is the global batch; process 0 scores the epochs and writes ``out_dir``, which every process reads
            to continue a run (on several machines, put it on a file system they share). Not part of the run:
            a run may continue on another number of processes.

    Raises:
        ValueError: an unknown ``select_by``, splits missing from ``data``, an attention model on a file without
            grid features, a run folder that cannot be written, or a run in ``out_dir`` that cannot be continued
            (other data, model or settings; or may not be: ``resume=False``).
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {list(SELECT_BY)}, got {select_by!r}")
    check_device(device)  # before any work
    out_dir = Path(out_dir)
    check_out_dir(out_dir, (*RUN_FILES, SHIPPED_FILE))  # before any work, not after the first epoch
    state = read_state(out_dir / STATE_FILE) if (out_dir / STATE_FILE).exists() else None
    if state is not None and not resume:
        raise ValueError(
            f"{out_dir} already holds a training run; continue it (without --fresh), or choose another folder"
        )
    model = None if state is None else model_from_state(state, out_dir)
    init_path = _check_init(init, settings, config, state)
    if model is None and init_path is not None:
        model = load_model(init_path)
    grid = model.reads_grid if model is not None else isinstance(settings, AttentionConfig)
    paths = data_paths(data)
    inputs = (
        _read_inputs(paths[0], train_split, val_split, grid)
        if len(paths) == 1
        else _read_joint_inputs(paths, train_split, val_split, grid, min_count)
    )
    try:
        return _fit_on(
            inputs, out_dir, state, model, paths, settings, config, select_by, init_path, device, communicator
        )
    finally:  # a streamed split holds its file open
        for split in (inputs.train, inputs.val, *(part.data for part in inputs.parts)):
            split.close()


def _fit_on(
    inputs: _Inputs,
    out_dir: Path,
    state: TrainerState | None,
    model: CaptionModel | None,
    paths: list[Path],
    settings: ModelConfig | None,
    config: TrainConfig | None,
    select_by: str,
    init: Path | None,
    device: str,
    communicator: Communicator | None,
) -> FitResult:
    """:func:`fit` once its data is read: build, fine-tune or continue the run, train, save the best model."""
    fingerprint = inputs.fingerprint
    if model is not None:
        model.to(device)  # before Trainer.resume, which puts the checkpoint's arrays where the model is
    scorer = None
    if select_by != "val_loss":
        scorer = (
            greedy_scorer(inputs.val, inputs.parts[0].references, inputs.max_length, key=select_by)
            if len(paths) == 1
            else joint_scorer(inputs.parts, inputs.max_length, key=select_by)
        )

    if model is not None and state is not None:
        _check_continues(out_dir, state, model, inputs, fingerprint, paths, settings, config, init)
        model.metadata["data_fingerprint"] = fingerprint  # a 0.2 run's first record of it
        trainer = Trainer.resume(
            out_dir, inputs.train, inputs.val, model=model, config=config, scorer=scorer, communicator=communicator
        )
    elif model is not None and init is not None and config is not None:
        _check_init_fits(model, init, inputs)
        # The data the fine-tune learns from, by content (what a rerun must match), and the weights it started from.
        model.metadata |= {"data": data_label(paths), "data_fingerprint": fingerprint, "scst_init": init_record(init)}
        # The fine-tune learns to cut captions off ("... on a": CIDEr-D pays for the n-grams before); the model it
        # writes never ends a decoded caption so, at no cost in CIDEr (README, Self-critical fine-tuning).
        model.blocked_endings = CUT_OFF_ENDINGS
        if len(paths) > 1:
            model.metadata["data_sets"] = inputs.names
        trainer = Trainer(model, inputs.train, inputs.val, config, out_dir, scorer=scorer, communicator=communicator)
    else:
        config = TrainConfig() if config is None else config
        settings = _sized_for(RNNConfig() if settings is None else settings, inputs.train.features)
        model = build_model(settings, inputs.word_to_idx, rng=config.seed).to(device)
        # What a captioner needs besides the weights: which CNN's features the model reads, how long to decode,
        # and which data it learnt from (by name, and by content: what a rerun must match to continue the run).
        model.metadata = {
            "encoder": inputs.encoder,
            "max_length": inputs.max_length,
            "data": data_label(paths),
            "data_fingerprint": fingerprint,
        }
        if len(paths) > 1:
            model.metadata["data_sets"] = inputs.names
        trainer = Trainer(model, inputs.train, inputs.val, config, out_dir, scorer=scorer, communicator=communicator)

    start = time.perf_counter()
    history = trainer.train()
    seconds = time.perf_counter() - start
    val_splits = {part.name: part.split for part in inputs.parts}
    if trainer.communicator.rank == 0:
        best_path, shipped_path = _save_best(trainer, out_dir, select_by, val_splits)
    else:  # the other processes hold the same model; process 0 writes it
        best_path, shipped_path = out_dir / BEST_FILE, out_dir / SHIPPED_FILE
    trainer.communicator.barrier()
    return FitResult(trainer.model, history, trainer.best_epoch, best_path, shipped_path, seconds, state is not None)


def _check_continues(
    out_dir: Path,
    state: TrainerState,
    model: CaptionModel,
    inputs: _Inputs,
    fingerprint: str,
    paths: list[Path],
    settings: ModelConfig | None,
    config: TrainConfig | None,
    init: Path | None,
) -> None:
    """Raise ValueError, naming every difference, unless this rerun continues the run in ``out_dir``."""
    names = inputs.names if len(paths) > 1 else None
    differences = data_set_differences(model, names, data_label(paths)) or data_differences(
        model, inputs.word_to_idx, fingerprint, paths[0] if len(paths) == 1 else data_label(paths)
    )
    if settings is not None:
        differences += model_differences(model.settings, settings)
    if config is not None:
        differences += train_differences(TrainConfig(**state.config), config)
    differences += init_differences(model, init)
    if differences:
        raise ValueError(refusal(out_dir, differences))


def _check_init(
    init: str | os.PathLike | None, settings: ModelConfig | None, config: TrainConfig | None, state: object
) -> Path | None:
    """The file of the ``init`` model, after checking that the run fine-tunes it self-critically."""
    scst = config is not None and config.scst is not None
    if init is None:
        if scst and state is None:
            raise ValueError("self-critical training fine-tunes a trained model: pass init (--init MODEL)")
        return None
    if not scst:
        raise ValueError(f"init {init} is the model that self-critical training starts from: pass an scst config")
    if settings is not None:
        raise ValueError("with init the model's settings are the init model's own: pass no model settings")
    return model_path(init)


def _check_init_fits(model: CaptionModel, init: Path, inputs: _Inputs) -> None:
    """Raise ValueError unless the data is the kind the ``init`` model learnt from: its vocabulary, its encoder."""
    if model.word_to_idx != inputs.word_to_idx:
        raise ValueError(
            f"the data's vocabulary is not the one of the init model {init}: "
            f"{vocabulary_difference(model.word_to_idx, inputs.word_to_idx, 'the data')}; fine-tune on the data "
            "the model was trained on (with several files: the same files, whose joint vocabulary it has)"
        )
    model_encoder(model, inputs.encoder, source="the data", model_name=f"the init model {init}")


def fit_run(
    run: RunConfig, *, resume: bool = True, device: str = "cpu", communicator: Communicator | None = None
) -> FitResult:
    """:func:`fit` with the settings of ``run`` (e.g. :func:`load_run_config`), in ``run.run_dir``.

    A run already in ``run.run_dir`` is continued with its own settings where ``run`` gives none
    (:meth:`RunConfig.continuing`): a rerun of the same command continues, one with a setting changed is refused.
    ``device`` and ``communicator`` are :func:`fit`'s.
    """
    state_file = run.run_dir / STATE_FILE
    if resume and state_file.is_file():
        run = run.continuing(*run_settings(read_state(state_file)))
    return fit(
        run.data_files,
        run.run_dir,
        None if run.scst else run.settings,
        run.train,
        init=run.init,
        train_split=run.train_split,
        val_split=run.val_split,
        select_by=run.select_by,
        resume=resume,
        min_count=run.min_count,
        device=device,
        communicator=communicator,
    )


def data_paths(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """``data`` as a list of paths: one file, or several in the order given (none is an error)."""
    paths = [Path(data)] if isinstance(data, str | os.PathLike) else [Path(path) for path in data]
    if not paths:
        raise ValueError("a run needs at least one prepared data file")
    return paths


def data_label(paths: Sequence[Path]) -> str:
    """The run's data by file name, as the model's metadata records it: ``flickr8k.h5+coco.h5``."""
    return "+".join(path.name for path in paths)


class _Inputs(NamedTuple):
    """What a run reads from its prepared file(s)."""

    train: CaptionData
    val: CaptionData  # every data set's validation split, one after the other
    parts: list[ValPart]  # each data set's validation split and references, scored on its own
    encoder: str
    word_to_idx: dict[str, int]
    max_length: int  # <START>, the words and <END> of the longest training caption
    fingerprint: str  # of everything above (rnncap.apps.continuation.data_fingerprint)
    names: list[str]  # the data sets


def _read_inputs(data: Path, train_split: str, val_split: str, grid: bool) -> _Inputs:
    """One file, with its own vocabulary and captions as prepared."""
    with open_store(data) as store:
        val_split = val_split_of(store, val_split)
        train, val = read_split(store, train_split, grid), read_split(store, val_split, grid)
        references = list(store.load_references(val_split).values())
        fingerprint = data_fingerprint(
            store.word_to_idx, store.encoder, {train_split: train, val_split: val}, references
        )
        part = ValPart(store.name or data.stem, val_split, val, references)
        max_length = train.captions.shape[1]
        return _Inputs(train, val, [part], store.encoder, store.word_to_idx, max_length, fingerprint, [part.name])


def _read_joint_inputs(paths: list[Path], train_split: str, val_split: str, grid: bool, min_count: int) -> _Inputs:
    """Several files joined (:func:`rnncap.apps.joint.read_joint`); the fingerprint covers each, in order."""
    joint = read_joint(paths, train_split, val_split, grid, min_count)
    splits = {"0:train": joint.train} | {f"{i + 1}:{p.name}/{p.split}": p.data for i, p in enumerate(joint.parts)}
    references = [refs for part in joint.parts for refs in part.references]
    fingerprint = data_fingerprint(joint.word_to_idx, joint.encoder, splits, references)
    names = [part.name for part in joint.parts]
    max_length = joint.train.captions.shape[1]
    return _Inputs(
        joint.train, joint.val, joint.parts, joint.encoder, joint.word_to_idx, max_length, fingerprint, names
    )


def _sized_for(settings: ModelConfig, features: np.ndarray) -> ModelConfig:
    """``settings`` with the input size of ``features``: D of pooled (M, D), or L and D of grids (M, L, D)."""
    if isinstance(settings, AttentionConfig):
        _, L, D = features.shape
        return replace(settings, num_locations=L, input_dim=D)
    return replace(settings, input_dim=features.shape[1])


def _save_best(trainer: Trainer, out_dir: Path, select_by: str, val_splits: dict[str, str]) -> tuple[Path, Path]:
    """Save the trained model (the best epoch's) with the facts of the run: ``best.npz`` and its float16 copy."""
    model, history = trainer.model, trainer.history
    best_path = out_dir / BEST_FILE
    if trainer.best_epoch is not None:
        epoch = trainer.best_epoch - 1
        model.metadata["training"] = {
            "epochs": trainer.epoch,
            "best_epoch": trainer.best_epoch,
            "select_by": select_by,
            "val_split": next(iter(val_splits.values())) if len(val_splits) == 1 else val_splits,
            "val_loss": history["val_loss"][epoch],
            "val_greedy": history["metrics"][epoch],
            "seconds": round(sum(history["epoch_time"]), 1),
        }
        model.save(best_path)  # again, now with the facts of the finished run
    shipped_path = model.save(out_dir / SHIPPED_FILE, weights_dtype=np.float16)
    return best_path, shipped_path


def greedy_scorer(val: CaptionData, references: list[list[str]], max_length: int, key: str = "CIDEr") -> MetricScorer:
    """A scorer for the Trainer: greedy captions of every validation photo -> {"BLEU-4", "CIDEr"} (0-1), the
    best epoch chosen by ``key``, higher is better.

    Args:
        val: the validation split (its ``features`` rows are the photos, pooled or grids as the model reads).
        references: the human captions of each photo, in the order of ``val.features``.
        max_length: decoding steps.
        key: "BLEU-4" or "CIDEr".
    """
    if len(references) != len(val.features):
        raise ValueError(f"{len(references)} reference lists for {len(val.features)} validation photos")

    def score(model: CaptionModel) -> dict[str, float]:
        return _greedy_scores(model, val.features, references, max_length)

    return MetricScorer(score, higher_is_better=True, key=key)


def joint_scorer(parts: Sequence[ValPart], max_length: int, key: str = "CIDEr") -> MetricScorer:
    """A scorer for a run on several data sets: each part's greedy ``"<name>/BLEU-4"`` and ``"<name>/CIDEr"``
    (0-1), and ``"BLEU-4"`` and ``"CIDEr"`` their means over the parts; the best epoch chosen by ``key`` (a mean,
    or one data set's ``"<name>/CIDEr"``), higher is better."""
    for part in parts:
        if len(part.references) != len(part.data.features):
            raise ValueError(f"{len(part.references)} reference lists for {len(part.data.features)} {part.name} photos")

    def score(model: CaptionModel) -> dict[str, float]:
        scores: dict[str, float] = {}
        for part in parts:
            for metric, value in _greedy_scores(model, part.data.features, part.references, max_length).items():
                scores[f"{part.name}/{metric}"] = value
        for metric in ("BLEU-4", "CIDEr"):
            scores[metric] = float(np.mean([scores[f"{part.name}/{metric}"] for part in parts]))
        return scores

    return MetricScorer(score, higher_is_better=True, key=key)


def _greedy_scores(
    model: CaptionModel, features: np.ndarray, references: list[list[str]], max_length: int
) -> dict[str, float]:
    """BLEU-4 and CIDEr-D (0-1) of greedy captions of ``features`` (M, ...) against each photo's ``references``."""
    image_ids = list(range(len(references)))
    captions = caption_features(model, features, max_length, beam_size=1, progress=False)
    scores = evaluate(
        dict(zip(image_ids, captions, strict=True)),
        dict(zip(image_ids, references, strict=True)),
        metrics=("BLEU", "CIDEr"),
    )
    return {"BLEU-4": scores["BLEU-4"], "CIDEr": scores["CIDEr"]}
