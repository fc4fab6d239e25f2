"""What the commands share: argument types, each turning a bad value into argparse's one-line usage error, and
options that mean the same everywhere."""

from __future__ import annotations

import argparse


def split_list(text: str) -> tuple[str, ...]:
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    if not splits:
        raise argparse.ArgumentTypeError("expected comma-separated split names, e.g. train,dev")
    return splits


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """``--model NAME_OR_PATH``, what :func:`rnncap.apps.paths.model_path` reads (None: the shipped model)."""
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="a model file (.npz) or the name of a shipped model (default: the shipped one)",
    )


def add_device_option(parser: argparse.ArgumentParser, work: str) -> None:
    """``--device cpu|cuda``: where the engine runs ``work`` (:mod:`rnncap.backend`; cuda needs the gpu extra)."""
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help=f"where {work} runs: cpu (NumPy, default) or cuda (CuPy on an NVIDIA GPU: pip install 'rnncap[gpu]')",
    )


OUTPUTS_RULE = (
    "No command replaces an existing file without --overwrite; every output is checked (not a folder, its folder "
    "can be made and written in, not one of the inputs) before any work starts."
)


def add_overwrite_option(parser: argparse.ArgumentParser, replaced: str) -> None:
    """``--overwrite``: the one rule for outputs (:mod:`rnncap.apps.outputs`); ``replaced`` says what it replaces."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {replaced} (without it, an existing file is refused before any work starts)",
    )
