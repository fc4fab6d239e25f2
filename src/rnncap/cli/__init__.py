"""The ``rnncap`` command line: thin, it parses, calls the library and prints.

rnncap prepare SOURCE --root DIR --out FILE     read a data set and extract CNN features (cli/prepare.py)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rnncap import __version__
from rnncap.cli import prepare

EXIT_ERROR = 1
COMMANDS = (prepare,)


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
    parser = argparse.ArgumentParser(prog="rnncap", description="Image captioning with recurrent networks in NumPy.")
    parser.add_argument("--version", action="version", version=f"rnncap {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser
