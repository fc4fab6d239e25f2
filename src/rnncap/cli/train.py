"""``rnncap train``: train a captioner on a prepared file, keep the epoch with the best validation CIDEr.

rnncap train --data flickr8k.h5 [--out runs/flickr8k-lstm] [--cell lstm] [--hidden 512] ... [--config run.toml]
rnncap train --data flickr8k.h5 --attention [--attention-dim 512] [--alpha-reg 1.0] ...   (Show, Attend and Tell)
rnncap train --data flickr8k.h5 --data coco.h5 [--min-count 5] ...   (one model, several data sets)
rnncap train --data flickr8k.h5 --scst --init runs/flickr8k-lstm/best.npz [--samples 5] [--baseline mean] ...
    (self-critical fine-tuning for CIDEr-D: rnncap.train.scst)
torchrun --nproc-per-node N -m rnncap train --data flickr8k.h5 ...   (data-parallel: N processes, one global batch;
    --nnodes/--rdzv-endpoint across machines: rnncap.apps.distributed)

Every option can also come from a TOML file (``--config``), keys named as the options (``hidden = 512``,
``lr_decay = 0.9``, ``attention = true``); options given on the command line win. The file is read, and the
defaults are taken, by :func:`rnncap.apps.fit.load_run_config`. On a run folder that holds a run, the options
given by neither are the run's (:meth:`rnncap.apps.run_config.RunConfig.continuing`), and those given must match
it (:mod:`rnncap.apps.continuation`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rnncap.apps.run_config import (
    RUN_KEYS,
    RUNS_DIR,
    RunConfig,
    load_run_config,
)
from rnncap.cli.args import add_device_option, positive
from rnncap.models import AttentionConfig, RNNConfig
from rnncap.models.config import IMAGE_INPUTS
from rnncap.nn import CELLS
from rnncap.optim import UPDATE_RULES
from rnncap.train import SCSTConfig, TrainConfig
from rnncap.train.config import BASELINES
from rnncap.train.scst import SCST_BATCH_SIZE, SCST_LEARNING_RATE

if TYPE_CHECKING:
    from rnncap.apps.fit import FitResult


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap train`` to the command line; every option's default (None: not given) is load_run_config's."""
    train = commands.add_parser(
        "train",
        help="train a captioner on a prepared file (rnncap prepare), keeping the epoch with the best dev CIDEr",
        description="Train a captioner on a file written by `rnncap prepare`. After every epoch it reports the "
        "validation loss and the greedy captions' BLEU-4 and CIDEr on the validation split, and keeps the best "
        "epoch. The run folder gets best.npz (the best model), best-float16.npz (the same, half the size, to "
        "ship), model.npz and trainer_state.npz (the last epoch, to continue), history.json and loss.png; a kill at "
        "any moment loses at most the epoch in progress. Running the same command again (or with options left "
        "out: they are the run's) continues an interrupted run; another data file or a changed model or training "
        "option (--epochs, --patience and --keep-epochs aside) stops and names what differs. --out must be a folder.",
    )
    option = train.add_argument
    option("--config", type=Path, help="a TOML file of option values, keys named like the options (lr_decay = 0.9)")
    option(
        "--data",
        type=Path,
        action="append",
        help="the prepared HDF5 file (required, here or in --config); repeat it to train one model on several: "
        "one vocabulary from their train captions together, each validated on its own dev (else val) split, the "
        "best epoch by the mean of their scores",
    )
    option(
        "--out",
        type=Path,
        help=f"the run folder (default: {RUNS_DIR}/<data name>-<cell>, or {RUNS_DIR}/<data name>-attention; "
        "several data files join their names with +)",
    )
    _config_flag(
        option,
        "--attention",
        "train the attention model (Show, Attend and Tell) on the grid features instead of a recurrent "
        "network on the pooled ones; needs a file prepared without --no-grid",
    )
    _add_model_options(option)
    _add_training_options(option)
    _add_scst_options(option)
    option("--fresh", action="store_true", help="refuse to continue a run already in --out")
    add_device_option(train, "the training (a run may continue on the other device)")
    train.set_defaults(run=_run_train, parser=train)


def _add_model_options(option: Callable[..., argparse.Action]) -> None:
    attention, rnn = AttentionConfig, RNNConfig
    option(
        "--attention-dim",
        type=positive,
        help=f"attention width A of the attention model (default {attention.attention_dim})",
    )
    option(
        "--alpha-reg",
        type=float,
        help="weight of the attention model's doubly stochastic regulariser, 0 turns it off "
        f"(default {attention.alpha_reg})",
    )
    option(
        "--cell",
        choices=sorted(CELLS),
        help=f"recurrent cell (default {rnn.cell_type}, the only one with --attention)",
    )
    option("--wordvec", type=positive, help=f"word vector width W (default {rnn.wordvec_dim})")
    option("--hidden", type=positive, help=f"hidden state width H (default {rnn.hidden_dim})")
    option("--dropout", type=float, help=f"dropout on word vectors and outputs while training (default {rnn.dropout})")
    option(
        "--image-input",
        choices=IMAGE_INPUTS,
        help="how the image enters the recurrent network: init, its initial state (CS231n), or first_word, its "
        f"first input before <START> (Show and Tell) (default {rnn.image_input}; not with --attention)",
    )


def _config_flag(option: Callable[..., argparse.Action], name: str, help: str) -> None:
    """An on/off option that ``--config`` may set too: None when not given (not False), so the file's value stands."""
    option(name, action="store_true", default=None, help=help)


def _add_scst_options(option: Callable[..., argparse.Action]) -> None:
    scst = SCSTConfig()
    _config_flag(
        option,
        "--scst",
        "self-critical fine-tuning (Rennie et al. 2017) of the --init model for CIDEr-D: samples captions, "
        f"rewards them against each photo's captions; --batch-size then counts photos (default {SCST_BATCH_SIZE}), "
        f"--lr defaults to {SCST_LEARNING_RATE:g}, no learning rate decay; the model's settings are --init's",
    )
    option("--init", help="with --scst: the trained model to fine-tune, a model file or a shipped model's name")
    option("--samples", type=positive, help=f"with --scst: captions sampled per photo (default {scst.num_samples})")
    option(
        "--baseline",
        choices=BASELINES,
        help=f"with --scst: mean (of the photo's other samples, Luo 2020) or greedy (the greedy caption's reward, "
        f"Rennie et al.) (default {scst.baseline})",
    )
    option(
        "--scst-max-length",
        type=positive,
        help=f"with --scst: tokens of a sampled caption at most, <END> included (default {scst.max_length})",
    )


def _add_training_options(option: Callable[..., argparse.Action]) -> None:
    train, run = TrainConfig(), RunConfig
    learning_rate = np.format_float_scientific(train.optim_config["learning_rate"], trim="-", exp_digits=1)
    option("--epochs", type=positive, help=f"at most this many epochs (default {train.num_epochs})")
    option(
        "--batch-size",
        type=positive,
        help=f"captions per update (default {train.batch_size}; photos with --scst, default {SCST_BATCH_SIZE}); "
        "under torchrun the global batch, split over the processes",
    )
    option("--update-rule", choices=sorted(UPDATE_RULES), help=f"optimiser (default {train.update_rule})")
    option("--lr", type=float, help=f"learning rate (default {learning_rate})")
    option("--lr-decay", type=float, help=f"learning rate factor per epoch (default {train.lr_decay})")
    option("--clip", type=float, help="clip the gradient norm to this (default: no clipping)")
    option(
        "--patience",
        type=positive,
        help=f"stop after this many epochs without a better score (default {train.patience})",
    )
    option(
        "--select-by",
        help=f"what chooses the best epoch: {run.select_by} (default; of greedy captions), BLEU-4 or val_loss",
    )
    option("--train-split", help=f"split to train on (default {run.train_split})")
    option(
        "--val-split",
        help=f"split to validate and select on (default {run.val_split}; a file without one, as COCO's: val)",
    )
    option(
        "--min-count",
        type=positive,
        help=f"with several --data, words seen fewer times in their train captions become <UNK> (default "
        f"{run.min_count}, as rnncap prepare's)",
    )
    option("--seed", type=int, help=f"seeds the initial weights and the shuffling (default {train.seed})")
    _config_flag(
        option,
        "--keep-epochs",
        "also keep every epoch's model in the run folder (epoch-001.npz ...), to average the last few with "
        "`rnncap average`",
    )


def _run_train(args: argparse.Namespace) -> None:
    # Imported here: fit brings h5py and the metrics; the communicator brings torch, under torchrun only.
    from rnncap.apps.distributed import torchrun_communicator
    from rnncap.apps.fit import fit_run

    given = {key: getattr(args, key) for key in RUN_KEYS if getattr(args, key) is not None}
    run = load_run_config(args.config, given)  # the command line wins over the file
    if run.data is None:
        args.parser.error("--data is required (on the command line or in the --config file)")
    run = replace(run, train=replace(run.train, progress=True))
    with torchrun_communicator(args.device) as communicator:
        report = print if communicator.rank == 0 else _silent  # one report per run, not one per process
        data = " + ".join(str(path) for path in run.data_files)
        choice = f"{run.select_by} on {run.val_split}"
        if len(run.data_files) > 1:
            choice = f"the mean {run.select_by} of the data sets, each on its {run.val_split} split (val without one)"
        kind = f"fine-tuning {run.init} self-critically " if run.scst else "training "
        processes = "" if communicator.world_size == 1 else f" in {communicator.world_size} processes"
        report(f"{kind}on {data} ({run.train_split}){processes}, choosing by {choice}; run: {run.run_dir}")
        result = fit_run(run, resume=not args.fresh, device=args.device, communicator=communicator)
    _report(result, report)


def _report(result: FitResult, report: Callable[[str], object]) -> None:
    """The epochs of a finished run, its best one marked, and the files written. A self-critical run shows its
    epochs' mean sample reward and baseline (CIDEr-D, 0-100) where a cross-entropy run shows its training loss."""
    history = result.history
    names = [name for name in _score_columns(history["metrics"])]
    scst = "train_reward" in history
    report(
        ("epoch  reward  baseline" if scst else "epoch  train_loss")
        + "  val_loss  "
        + "  ".join(names)
        + ("  (greedy, 0-100)" if names else "")
    )
    trained = (
        [
            f"{100 * r:6.1f}  {100 * b:8.1f}"
            for r, b in zip(history["train_reward"], history["train_baseline"], strict=True)
        ]
        if scst
        else [f"{loss:10.3f}" for loss in history["train_loss"]]
    )
    for epoch, train, val_loss, metrics in zip(
        history["epoch"], trained, history["val_loss"], history["metrics"], strict=True
    ):
        scores = "  ".join(
            f"{'':>{len(name)}}" if metrics is None else f"{100 * metrics[name]:>{len(name)}.1f}" for name in names
        )
        best = "  <- best" if epoch == result.best_epoch else ""
        report(f"{epoch:5d}  {train}  {val_loss:8.3f}  {scores}{best}")
    report(f"trained {len(history['epoch'])} epochs in {sum(history['epoch_time']):.0f} s")
    report(f"wrote {result.best_path} (epoch {result.best_epoch}) and {result.shipped_path} (float16 weights)")


def _silent(text: str) -> None:
    """What a process other than process 0 reports: nothing."""


def _score_columns(metrics: list[dict[str, float] | None]) -> list[str]:
    """The columns of the history's scores: BLEU-4 and CIDEr, or with several data sets each data set's
    (``flickr8k/BLEU-4``, ``flickr8k/CIDEr``, ...) and then their means, which choose the best epoch."""
    names = next((list(m) for m in metrics if m is not None), [])
    return [name for name in names if "/" in name] + [name for name in ("BLEU-4", "CIDEr") if name in names]
