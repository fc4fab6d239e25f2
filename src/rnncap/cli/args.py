"""Argument types shared by the commands: each turns a bad value into argparse's one-line usage error."""

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
