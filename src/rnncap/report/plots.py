"""Plots of a training run: the loss curves and the validation scores of its history."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnncap.files import atomic_write


def plot_history(history: Mapping[str, Sequence[Any]], path: str | os.PathLike, score_label: str | None = None) -> Path:
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
