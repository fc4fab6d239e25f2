"""``rnncap average``: one model whose weights are the mean of several checkpoints of one run.

rnncap average runs/x/epoch-008.npz runs/x/epoch-009.npz runs/x/epoch-010.npz --out runs/x/average.npz [--float16]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rnncap.cli.args import add_overwrite_option


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap average`` to the command line."""
    average = commands.add_parser(
        "average",
        help="average the weights of several checkpoints of one run (e.g. its last epochs)",
        description="Write one model whose every weight is the mean of the given models' (checkpoint averaging). "
        "The models must be checkpoints of one run, as `rnncap train --keep-epochs` keeps them (epoch-NNN.npz): "
        "the same kind of model, sizes and vocabulary; anything else is refused. The new model records the files "
        "it averages in its metadata. Score it with `rnncap evaluate --model FILE`.",
    )
    average.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="model files (.npz) of one run")
    average.add_argument("--out", type=Path, required=True, help="the averaged model file to write (.npz)")
    average.add_argument("--float16", action="store_true", help="store the weights in float16 (half the size)")
    add_overwrite_option(average, "--out")
    average.set_defaults(run=_run_average)


def _run_average(args: argparse.Namespace) -> None:
    from rnncap.apps.outputs import check_outputs
    from rnncap.models import average_model_files

    check_outputs({"--out": args.out}, overwrite=args.overwrite, inputs=args.models)
    model = average_model_files(args.models)
    written = model.save(args.out, weights_dtype=np.float16 if args.float16 else None)
    print(f"wrote {written}: the mean of {len(args.models)} models")
