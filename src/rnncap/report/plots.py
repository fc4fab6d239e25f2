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
    function returned several). A self-critical run's history (``iteration_reward``, see rnncap.train.scst) adds a
    panel of the mean sample reward and the mean baseline per step, and their epoch means.
    """
    # Imported here: matplotlib is slow to import and only plots need it. The Figure API draws with Agg without
    # pyplot, so the caller's matplotlib backend is left alone.
    from matplotlib.figure import Figure

    path = Path(path)
    rewards = bool(history.get("iteration_reward"))
    rows = 1 + bool(score_label) + rewards
    fig = Figure(figsize=(8, 2 + 2 * rows), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if rewards:
        _plot_rewards(axes[-1], history)
    ax = axes[0]
    iterations = np.arange(1, len(history["iteration_loss"]) + 1)
    ax.plot(iterations, history["iteration_loss"], lw=0.7, alpha=0.5, label="minibatch loss")
    ax.plot(history["iterations"], history["train_loss"], "o-", label="train loss (epoch mean)")
    val = [(x, y) for x, y in zip(history["iterations"], history["val_loss"], strict=True) if y is not None]
    if val:
        ax.plot(*zip(*val, strict=True), "s-", label="validation loss")
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
    ax.set_ylabel("surrogate loss" if rewards else "loss per caption")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path


def _plot_rewards(ax: Any, history: Mapping[str, Sequence[Any]]) -> None:
    """Mean sample reward and mean baseline per step (thin) and per epoch (points), CIDEr-D."""
    steps = np.arange(1, len(history["iteration_reward"]) + 1)
    ax.plot(steps, history["iteration_reward"], lw=0.7, alpha=0.5, color="C2", label="sample reward")
    ax.plot(steps, history["iteration_baseline"], lw=0.7, alpha=0.5, color="C4", label="baseline")
    ax.plot(history["iterations"], history["train_reward"], "o-", color="C2", label="sample reward (epoch mean)")
    ax.plot(history["iterations"], history["train_baseline"], "o-", color="C4", label="baseline (epoch mean)")
    ax.set_ylabel("CIDEr-D (0-10)")
    ax.legend()
