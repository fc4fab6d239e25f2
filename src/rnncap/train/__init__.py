"""Training: the data a run reads, its settings, the loop, its checkpoints.

``from rnncap.train import CaptionData, TrainConfig, Trainer`` is the public entry point.
"""

from rnncap.train.trainer import (
    BEST_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    PLOT_FILE,
    STATE_FILE,
    CaptionData,
    History,
    ScoreFn,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    plot_history,
)

__all__ = [
    "BEST_FILE",
    "HISTORY_FILE",
    "MODEL_FILE",
    "PLOT_FILE",
    "STATE_FILE",
    "CaptionData",
    "History",
    "ScoreFn",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "plot_history",
]
