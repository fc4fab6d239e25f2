"""The ``rnncap`` command line: thin, it parses, calls the library and prints.

rnncap prepare SOURCE --root DIR --out FILE     read a data set and extract CNN features (cli/prepare.py)
rnncap train --data FILE [--cell lstm] ...      train a captioner, keep the best epoch by dev CIDEr (cli/train.py)
rnncap evaluate --data FILE [--model M] ...     caption a split and score it, JSON and HTML gallery (cli/evaluate.py)
rnncap caption PHOTO|FOLDER ... [--model M]     describe photos in words (cli/caption.py)
rnncap serve [--model M] [--port 8000] ...      a captioning web page and JSON API (cli/serve.py)
rnncap average MODEL MODEL ... --out FILE       one model, the mean of a run's checkpoints (cli/average.py)

Outputs, the one rule (rnncap.apps.outputs): no command replaces an existing file without --overwrite (prepare
continues a file holding the same data), and every output is checked before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rnncap import __version__
from rnncap.cli import average, caption, evaluate, prepare, serve, train
from rnncap.cli.args import OUTPUTS_RULE

EXIT_ERROR = 1
COMMANDS = (prepare, train, evaluate, caption, serve, average)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
    except (OSError, ValueError, RuntimeError) as err:  # the library's errors name what is wrong: show just that
        print(f"rnncap {args.command}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    return status or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnncap", description=f"Image captioning with recurrent networks in NumPy. {OUTPUTS_RULE}"
    )
    parser.add_argument("--version", action="version", version=f"rnncap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser
