"""Training: the data a run reads, its settings, the loop, its checkpoints and what chooses its best epoch.

``from rnncap.train import CaptionData, TrainConfig, Trainer`` is the public entry point. The modules:
``data`` (CaptionData), ``config`` (TrainConfig, the one set of training defaults, and TOML), ``trainer`` (the
loop), ``checkpoint`` (the run's files and the state file a resume reads), ``scoring`` (Scorer), ``scst`` (self-critical
fine-tuning: ``scst_config`` makes a TrainConfig whose ``scst`` is an SCSTConfig) and ``rewards`` (CIDEr-D on
token ids).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rnncap.train.checkpoint import BEST_FILE, HISTORY_FILE, MODEL_FILE, PLOT_FILE, STATE_FILE, History
from rnncap.train.config import SCSTConfig, TrainConfig
from rnncap.train.data import CaptionData, ConcatFeatures, FeatureSource
from rnncap.train.divergence import TrainingDiverged
from rnncap.train.scoring import MetricScorer, Score, ScoreFn, Scorer, ValLossScorer

if TYPE_CHECKING:
    from rnncap.train.trainer import Trainer

__all__ = [
    "BEST_FILE",
    "HISTORY_FILE",
    "MODEL_FILE",
    "PLOT_FILE",
    "STATE_FILE",
    "CaptionData",
    "ConcatFeatures",
    "FeatureSource",
    "SCSTConfig",
    "History",
    "MetricScorer",
    "Score",
    "ScoreFn",
    "Scorer",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "ValLossScorer",
    "plot_history",
]


def __getattr__(name: str) -> Any:
    # The trainer brings tqdm and the models: imported on first use, so that the data readers, which import
    # rnncap.train.data (and so this package), do not load them.
    if name == "Trainer":
        from rnncap.train.trainer import Trainer

        return Trainer
    if name == "plot_history":  # its home is rnncap.report.plots (presentation); kept here for existing callers
        from rnncap.report.plots import plot_history

        return plot_history
    raise AttributeError(f"module 'rnncap.train' has no attribute {name!r}")
