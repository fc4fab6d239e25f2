"""Packed sequences: the teacher-forced training step with the recurrence packed (today's loss) against padded.

The models' loss sorts a batch by caption length and runs only the rows still active at each step
(:mod:`rnncap.nn.packed`). The padded side is the loss as it was before: ``packed_steps`` returning None, so that
the recurrence runs every row for the batch's longest caption. Both sides run in one process, alternating after a
warm-up (packed first, then padded first, ...), and the median of the repeats is reported, in wall-clock and in
process CPU time: on a loaded machine CPU time says how much work a step does, wall time how long it waits too.

Batches: ``realistic`` (``bench_engine.BATCHES``: T/3..T-1 random words) and, with ``--store``, real caption
lengths (captions drawn at random from a prepared store's ``captions/tokens``).

Usage::

    python benchmarks/bench_packed.py --threads 1
    python benchmarks/bench_packed.py --store /work/prepared/flickr8k.h5 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import h5py
import numpy as np
from threadpoolctl import threadpool_limits

import bench_attention
import bench_engine
from rnncap.models import attention_captioner, captioning_rnn

MODULES = (captioning_rnn, attention_captioner)
PACKED_STEPS = {module: module.packed_steps for module in MODULES}


def set_packed(on: bool) -> None:
    """Packed (the loss as shipped) or padded (``packed_steps`` -> None: every row at every step)."""
    for module, packed_steps in PACKED_STEPS.items():
        module.packed_steps = packed_steps if on else (lambda lengths, T: None)


def real_captions(store: str, N: int, T: int, rng: np.random.Generator) -> np.ndarray:
    """(N, T + 1) int32 captions drawn from a prepared store (cut or padded with <NULL> to T + 1 tokens)."""
    with h5py.File(store, "r") as f:
        tokens = f["captions/tokens"]
        rows = tokens[np.sort(rng.choice(len(tokens), N, replace=False))]
    out = np.zeros((N, T + 1), dtype=np.int32)
    width = min(T + 1, rows.shape[1])
    out[:, :width] = rows[:, :width]
    return out


def time_sides(step: Callable[[], float], warmup: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of ``step`` packed and padded, alternating their order every round."""
    seconds: dict[str, list[tuple[float, float]]] = {"packed": [], "padded": []}
    for r in range(warmup + repeats):
        for side in ("packed", "padded") if r % 2 == 0 else ("padded", "packed"):
            set_packed(side == "packed")
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            if r >= warmup:
                seconds[side].append((time.perf_counter() - wall, time.process_time() - cpu))
    set_packed(True)
    return {side: tuple(statistics.median(s[i] for s in v) for i in (0, 1)) for side, v in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--store", help="a prepared store: also time batches of its real captions")
    args = parser.parse_args(argv)
    threadpool_limits(args.threads)
    models = [
        ("flickr-lstm", bench_engine.build_numpy, bench_engine.CONFIGS["flickr-lstm"]),
        ("flickr-attention", bench_attention.build_numpy, bench_attention.CONFIGS["flickr-attention"]),
    ]
    print("| model | batch | active (row, step) pairs | padded captions/s (CPU) | packed captions/s (CPU) | speed-up |")
    print("|---|---|---|---|---|---|")
    for batch in ("realistic", *(["real"] if args.store else [])):
        for name, build, cfg in models:
            model, features, captions = build(cfg)
            if batch == "real":
                captions = real_captions(args.store, cfg.N, cfg.T, np.random.default_rng(5))
            lengths = (captions[:, 1:] != 0).sum(axis=1)
            fraction = lengths.sum() / (cfg.N * lengths.max())
            med = time_sides(bench_engine.numpy_train_step(model, features, captions), args.warmup, args.repeats)
            padded, packed = (cfg.N / med[s][1] for s in ("padded", "packed"))
            wall = med["padded"][0] / med["packed"][0]
            print(
                f"| {name} | {batch} | {fraction:.0%} | {padded:.1f} | {packed:.1f} | "
                f"{packed / padded:.2f}x CPU, {wall:.2f}x wall |",
                flush=True,
            )


if __name__ == "__main__":
    main()
