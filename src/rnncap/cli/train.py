"""``rnncap train``: train a captioner on a prepared file, keep the epoch with the best validation CIDEr.

rnncap train --data flickr8k.h5 [--out runs/flickr8k-lstm] [--cell lstm] [--hidden 512] ... [--config run.toml]
rnncap train --data flickr8k.h5 --attention [--attention-dim 512] [--alpha-reg 1.0] ...   (Show, Attend and Tell)

Every option can also come from a TOML file (``--config``), keys named as the options (``hidden = 512``,
``lr_decay = 0.9``, ``attention = true``); options given on the command line win.
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from rnncap.cli.args import positive
from rnncap.nn import CELLS
from rnncap.optim import UPDATE_RULES

DEFAULT_OUT = Path("runs")


# Built-in option values. The parser's own defaults are None so that a value given in --config can be told
# apart from one given on the command line (which wins), even when the latter equals the built-in value.
DEFAULTS = {
    "attention": False,
    "attention_dim": 512,
    "alpha_reg": 1.0,
    "cell": "lstm",
    "wordvec": 512,
    "hidden": 512,
    "dropout": 0.5,
    "epochs": 15,
    "batch_size": 128,
    "update_rule": "adam",
    "lr": 2e-3,
    "lr_decay": 0.9,
    "clip": None,
    "patience": 4,
    "select_by": "CIDEr",
    "train_split": "train",
    "val_split": "dev",
    "seed": 0,
    "data": None,
    "out": None,
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap train`` to the command line."""
    train = commands.add_parser(
        "train",
        help="train a captioner on a prepared file (rnncap prepare), keeping the epoch with the best dev CIDEr",
        description="Train a captioner on a file written by `rnncap prepare`. After every epoch it reports the "
        "validation loss and the greedy captions' BLEU-4 and CIDEr on the validation split, and keeps the best "
        "epoch. The run folder gets best.npz (the best model), best-float16.npz (the same, half the size, to "
        "ship), model.npz and trainer_state.npz (the last epoch, to continue), history.json and loss.png. Running "
        "the same command again continues an interrupted run.",
    )
    option = train.add_argument
    option("--config", type=Path, help="a TOML file of option values, keys named like the options (lr_decay = 0.9)")
    option("--data", type=Path, help="the prepared HDF5 file (required, here or in --config)")
    option("--out", type=Path, help="the run folder (default: runs/<data name>-<cell>, or runs/<data name>-attention)")
    option(
        "--attention",
        action="store_true",
        default=None,  # None: not given, so that --config may set it
        help="train the attention model (Show, Attend and Tell) on the grid features instead of a recurrent "
        "network on the pooled ones; needs a file prepared without --no-grid",
    )
    option("--attention-dim", type=positive, help="attention width A of the attention model (default 512)")
    option(
        "--alpha-reg",
        type=float,
        help="weight of the attention model's doubly stochastic regulariser, 0 turns it off (default 1.0)",
    )
    option("--cell", choices=sorted(CELLS), help="recurrent cell (default lstm, the only one with --attention)")
    option("--wordvec", type=positive, help="word vector width W (default 512)")
    option("--hidden", type=positive, help="hidden state width H (default 512)")
    option("--dropout", type=float, help="dropout on word vectors and outputs while training (default 0.5)")
    option("--epochs", type=positive, help="at most this many epochs (default 15)")
    option("--batch-size", type=positive, help="captions per update (default 128)")
    option("--update-rule", choices=sorted(UPDATE_RULES), help="optimiser (default adam)")
    option("--lr", type=float, help="learning rate (default 2e-3)")
    option("--lr-decay", type=float, help="learning rate factor per epoch (default 0.9)")
    option("--clip", type=float, help="clip the gradient norm to this (default: no clipping)")
    option("--patience", type=positive, help="stop after this many epochs without a better score (default 4)")
    option("--select-by", help="what chooses the best epoch: CIDEr (default; of greedy captions), BLEU-4 or val_loss")
    option("--train-split", help="split to train on (default train)")
    option("--val-split", help="split to validate and select on (default dev)")
    option("--seed", type=int, help="seeds the initial weights and the shuffling (default 0)")
    option("--fresh", action="store_true", help="refuse to continue a run already in --out")
    train.set_defaults(run=_run_train, parser=train)


def _run_train(args: argparse.Namespace) -> None:
    from rnncap.apps.fit import ModelSettings, fit
    from rnncap.train import TrainConfig

    _fill_options(args)
    if args.data is None:
        args.parser.error("--data is required (on the command line or in the --config file)")
    out = args.out or DEFAULT_OUT / f"{args.data.stem}-{'attention' if args.attention else args.cell}"
    settings = ModelSettings(
        cell_type=args.cell,
        wordvec_dim=args.wordvec,
        hidden_dim=args.hidden,
        dropout=args.dropout,
        seed=args.seed,
        attention=args.attention,
        attention_dim=args.attention_dim,
        alpha_reg=args.alpha_reg,
    )
    config = TrainConfig(
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        update_rule=args.update_rule,
        optim_config={"learning_rate": args.lr},
        lr_decay=args.lr_decay,
        max_grad_norm=args.clip,
        seed=args.seed,
        patience=args.patience,
        progress=True,
    )
    print(f"training on {args.data} ({args.train_split}), choosing by {args.select_by} on {args.val_split}; run: {out}")
    result = fit(
        args.data,
        out,
        settings,
        config,
        train_split=args.train_split,
        val_split=args.val_split,
        select_by=args.select_by,
        resume=not args.fresh,
    )
    history = result.history
    print("epoch  train_loss  val_loss  " + ("" if args.select_by == "val_loss" else "BLEU-4  CIDEr  (greedy, 0-100)"))
    for epoch, train_loss, val_loss, metrics in zip(
        history["epoch"], history["train_loss"], history["val_loss"], history["metrics"], strict=True
    ):
        scores = "" if metrics is None else f"{100 * metrics['BLEU-4']:6.1f}  {100 * metrics['CIDEr']:5.1f}"
        best = "  <- best" if epoch == result.best_epoch else ""
        print(f"{epoch:5d}  {train_loss:10.3f}  {val_loss:8.3f}  {scores}{best}")
    print(f"trained {len(history['epoch'])} epochs in {sum(history['epoch_time']):.0f} s")
    print(f"wrote {result.best_path} (epoch {result.best_epoch}) and {result.shipped_path} (float16 weights)")


def _fill_options(args: argparse.Namespace) -> None:
    """Options not given on the command line come from the --config file, else from :data:`DEFAULTS`."""
    values = {}
    if args.config is not None:
        try:
            values = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"cannot read the config file {args.config}: {exc}") from exc
    actions = {action.dest: action for action in args.parser._actions}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in DEFAULTS:
            raise ValueError(f"{args.config}: unknown option {key!r}; known: {sorted(DEFAULTS)}")
        if getattr(args, dest) is not None:
            continue  # the command line wins
        action = actions[dest]
        if isinstance(DEFAULTS[dest], bool) and not isinstance(value, bool):
            raise ValueError(f"{args.config}: {key} must be true or false, got {value!r}")
        if action.type is not None:
            value = action.type(str(value))
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{args.config}: {key} must be one of {sorted(action.choices)}, got {value!r}")
        setattr(args, dest, value)
    for dest, default in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
