"""Train a captioner on a prepared data file, choosing the best epoch by a caption metric: what `rnncap train` runs.

The Trainer (``train.py``) knows nothing about files of photos or metrics; this module joins the pieces for the
common case::

    result = fit("flickr8k.h5", "runs/flickr8k-lstm", ModelSettings(cell_type="lstm"), TrainConfig(num_epochs=15))
    result.model.beam_search(...)        # the best epoch's model; result.best_path is its file
    fit("flickr8k.h5", "runs/flickr8k-attention", ModelSettings(attention=True), TrainConfig(num_epochs=15))

A CaptioningRNN reads the file's pooled features (M, D); ``ModelSettings(attention=True)`` trains an
AttentionCaptioner (Show, Attend and Tell) on its grid features (M, L, D) instead, kept float16 in memory.

After every epoch the model writes greedy captions for the validation photos and is scored with BLEU-4 and CIDEr-D
(``rnncap.metrics``, no Java); the best epoch is the one with the best ``select_by`` (CIDEr by default, the metric
that tracks human judgement of captions best; "val_loss" chooses by the validation loss instead). Running the
same command again on the same ``out_dir`` continues an interrupted run from its last completed epoch.

Besides the Trainer's files, ``out_dir`` gets ``best-float16.npz``: the best model with float16 weights, half
the size, the form a model ships in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.data.store import Store, StoreError, open_store
from rnncap.decode import caption_features
from rnncap.metrics import evaluate
from rnncap.models import AttentionCaptioner, CaptioningRNN, load_model
from rnncap.train import (
    BEST_FILE,
    MODEL_FILE,
    STATE_FILE,
    CaptionData,
    History,
    TrainConfig,
    Trainer,
)

SELECT_BY = ("CIDEr", "BLEU-4", "val_loss")
SHIPPED_FILE = "best-float16.npz"


@dataclass(frozen=True)
class ModelSettings:
    """The shape of a new model (a resumed run keeps the one it was started with).

    ``attention`` chooses an AttentionCaptioner over the grid features instead of a CaptioningRNN over the pooled
    ones; its cell is an LSTM, and ``attention_dim`` (A) and ``alpha_reg`` (the doubly stochastic regulariser's
    weight) apply to it alone.
    """

    cell_type: str = "lstm"
    wordvec_dim: int = 512
    hidden_dim: int = 512
    dropout: float = 0.5
    seed: int = 0  # initial weights
    attention: bool = False
    attention_dim: int = 512
    alpha_reg: float = 1.0

    def __post_init__(self) -> None:
        if self.attention and self.cell_type != "lstm":
            raise ValueError(
                f"the attention model's cell is an LSTM; cell_type {self.cell_type!r} needs attention=False"
            )

    def build(self, word_to_idx: dict[str, int], features: np.ndarray) -> Any:
        """A new model with random weights for ``features``: (M, L, D) grids with attention, else (M, D)."""
        common = {
            "wordvec_dim": self.wordvec_dim,
            "hidden_dim": self.hidden_dim,
            "rng": self.seed,
            "dropout": self.dropout,
        }
        if self.attention:
            _, L, D = features.shape
            return AttentionCaptioner(
                word_to_idx,
                input_dim=D,
                num_locations=L,
                attention_dim=self.attention_dim,
                alpha_reg=self.alpha_reg,
                **common,
            )
        return CaptioningRNN(word_to_idx, input_dim=features.shape[1], cell_type=self.cell_type, **common)


@dataclass
class FitResult:
    """What a run produced: the best model (in memory and its files), its history and how long it took."""

    model: Any
    history: History
    best_epoch: int | None
    best_path: Path
    shipped_path: Path
    seconds: float
    resumed: bool


def fit(
    data: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: ModelSettings | None = None,
    config: TrainConfig | None = None,
    *,
    train_split: str = "train",
    val_split: str = "dev",
    select_by: str = "CIDEr",
    resume: bool = True,
) -> FitResult:
    """Train (or continue training) a captioner on a prepared file; see the module docstring.

    Args:
        data: a file written by ``rnncap prepare``.
        out_dir: the run's folder: checkpoints, ``best.npz``, ``best-float16.npz``, history and plots.
        settings: the new model's shape; ignored when a run in ``out_dir`` is continued (its saved model decides
            which features are read).
        config: the training settings; default ``TrainConfig()``.
        train_split, val_split: split names in ``data``.
        select_by: "CIDEr", "BLEU-4" (greedy captions of ``val_split``) or "val_loss".
        resume: continue the run already in ``out_dir``; False refuses to touch an existing run.

    Raises:
        ValueError: an unknown ``select_by``, splits missing from ``data``, an attention model on a file without
            grid features, or a run in ``out_dir`` that cannot be continued (or may not: ``resume=False``).
    """
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {list(SELECT_BY)}, got {select_by!r}")
    settings = ModelSettings() if settings is None else settings
    config = TrainConfig() if config is None else config
    out_dir = Path(out_dir)
    resumed = (out_dir / STATE_FILE).exists()
    if resumed and not resume:
        raise ValueError(f"{out_dir} already holds a training run; continue it or choose another folder")
    model = load_model(out_dir / MODEL_FILE) if resumed else None
    grid = model.reads_grid if resumed else settings.attention
    with open_store(data) as store:
        encoder, word_to_idx = store.encoder, store.word_to_idx
        train = _load_split(store, train_split, grid)
        val = _load_split(store, val_split, grid)
        references = store.load_references(val_split)
    max_length = train.captions.shape[1]  # <START>, the words and <END> of the longest caption
    score_fn = None
    if select_by != "val_loss":
        score_fn = greedy_scorer(val, list(references.values()), max_length)
    score_options = {} if score_fn is None else {"score_fn": score_fn, "higher_is_better": True, "score_key": select_by}

    if resumed:
        trainer = Trainer.resume(out_dir, train, val, model=model, config=config, **score_options)
    else:
        model = settings.build(word_to_idx, train.features)
        # What a captioner needs besides the weights: which CNN's features the model reads, how long to decode.
        model.metadata = {"encoder": encoder, "max_length": max_length, "data": Path(data).name}
        trainer = Trainer(model, train, val, config, out_dir, **score_options)

    start = time.perf_counter()
    history = trainer.train()
    seconds = time.perf_counter() - start
    model = trainer.model
    best_path = out_dir / BEST_FILE
    if trainer.best_epoch is not None:
        epoch = trainer.best_epoch - 1
        model.metadata["training"] = {
            "epochs": trainer.epoch,
            "best_epoch": trainer.best_epoch,
            "select_by": select_by,
            "val_split": val_split,
            "val_loss": history["val_loss"][epoch],
            "val_greedy": history["metrics"][epoch],
            "seconds": round(sum(history["epoch_time"]), 1),
        }
        model.save(best_path)  # again, now with the facts of the finished run
    shipped_path = model.save(out_dir / SHIPPED_FILE, weights_dtype=np.float16)
    return FitResult(model, history, trainer.best_epoch, best_path, shipped_path, seconds, resumed)


def _load_split(store: Store, split: str, grid: bool) -> CaptionData:
    """A split with its pooled features (M, D) float32, or with ``grid`` its grid features (M, L, D) float16."""
    data = store.load_split(split)
    if not grid:
        return data
    try:
        features = store.load_grid(split)
    except StoreError as exc:  # load_split read the split already: what is left to fail is a missing grid
        raise StoreError(
            f"{exc}; the attention model reads the grid: prepare the file again without --no-grid "
            "(rnncap prepare ... --overwrite), or train a model without attention"
        ) from exc
    return CaptionData(features, data.captions, data.image_idxs)


def greedy_scorer(val: CaptionData, references: list[list[str]], max_length: int) -> Any:
    """A ``score_fn`` for the Trainer: greedy captions of every validation photo -> {"BLEU-4", "CIDEr"} (0-1).

    Args:
        val: the validation split (its ``features`` rows are the photos, pooled or grids as the model reads).
        references: the human captions of each photo, in the order of ``val.features``.
        max_length: decoding steps.
    """
    if len(references) != len(val.features):
        raise ValueError(f"{len(references)} reference lists for {len(val.features)} validation photos")
    image_ids = list(range(len(references)))
    reference_map = dict(zip(image_ids, references, strict=True))

    def score(model: Any) -> dict[str, float]:
        captions = caption_features(model, val.features, max_length, beam_size=1, progress=False)
        scores = evaluate(dict(zip(image_ids, captions, strict=True)), reference_map, metrics=("BLEU", "CIDEr"))
        return {"BLEU-4": scores["BLEU-4"], "CIDEr": scores["CIDEr"]}

    return score
