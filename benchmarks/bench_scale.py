"""Training at COCO 2014's size in bounded memory: features streamed from the prepared file against in memory.

Writes synthetic prepared files with real shapes (features random float16, captions random word ids, 10k words):

- ``coco``: COCO 2014's 123,287 photos, 616,767 captions, pooled 1280 + 9 x 9 x 1280 grids (25 GB of grids);
- ``flickr8k``: Flickr8k's train size, 6,000 photos, 30,000 captions (1.2 GB of grids: fits in memory).

Then, for each model at its default size (CaptioningRNN on pooled features, AttentionCaptioner on grids), one fixed
number of training steps (``model.loss`` + Adam, the trainer's seeded permutation and batch order) in a fresh
subprocess per measurement, so that peak memories (``VmHWM``: the peak resident set) do not mix: features in
memory (``load_split``/``load_grid``, as training reads them today) or streamed (``open_split`` +
``CaptionData.batches``, with and without the prefetch thread). The synthetic files are deleted at the end, also
after Ctrl-C or an error. It refuses to start without the disk space the files need.

Usage::

    python benchmarks/bench_scale.py                           # the full run: ~27 GB under /tmp
    python benchmarks/bench_scale.py --photos 3000 --steps 5   # a quick check: a small "coco" file
    python benchmarks/bench_scale.py --out /big/disk/bench     # somewhere else
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rnncap.data import ImageRecord, create_store, open_store
from rnncap.data.store import load_grid, load_split, open_split
from rnncap.models import AttentionCaptioner, CaptioningRNN
from rnncap.optim import get_update_rule, resolve_hyperparameters
from rnncap.train import CaptionData

COCO = {"photos": 123_287, "captions": 616_767}
FLICKR8K = {"photos": 6_000, "captions": 30_000}
POOLED, CELLS, CHANNELS = 1280, 81, 1280
WORDS, MAX_LENGTH, BATCH_SIZE = 10_000, 16, 128
WRITE_ROWS = 1024  # photos written per call: ~210 MB of grids
GIB = 1 << 30


# ---- the synthetic files ---------------------------------------------------------------------------------------


def bytes_needed(photos: int) -> int:
    """The file's size, near enough: float16 pooled + grid rows, plus the captions and a margin."""
    return photos * 2 * (POOLED + CELLS * CHANNELS) + (64 << 20)


def write_store(path: Path, photos: int, captions: int, seed: int = 0) -> float:
    """A prepared file of ``photos`` photos (split "train") and ``captions`` captions, random features and ids;
    returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    word_to_idx = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3} | {f"w{i}": i for i in range(4, WORDS)}
    records = [ImageRecord(f"{i}", Path(f"/synthetic/{i}.jpg"), "train", ("x",)) for i in range(photos)]
    caption_image = np.sort(np.concatenate([np.arange(photos), rng.integers(0, photos, captions - photos)]))
    lengths = rng.integers(8, MAX_LENGTH + 1, captions)  # words per caption
    tokens = np.zeros((captions, MAX_LENGTH + 2), dtype=np.int32)
    tokens[:, 0] = 1
    words = rng.integers(4, WORDS, (captions, MAX_LENGTH), dtype=np.int32)
    inside = np.arange(MAX_LENGTH)[None, :] < lengths[:, None]
    tokens[:, 1:-1] = np.where(inside, words, 0)
    tokens[np.arange(captions), lengths + 1] = 2
    create_store(path, records, word_to_idx, tokens, caption_image, ["x"] * captions, name="synthetic")
    # A pool of random rows, drawn in a fresh order for every write: random features without drawing 10 billion
    # normal numbers (the content does not matter to the timing, only that nothing compresses or repeats in order).
    pool = min(photos, 2 * WRITE_ROWS)
    pooled_pool = rng.standard_normal((pool, POOLED), dtype=np.float32).astype(np.float16)
    grid_pool = rng.standard_normal((pool, CELLS, CHANNELS), dtype=np.float32).astype(np.float16)
    with open_store(path, writable=True) as store:
        store.begin_features("synthetic", pooled_dim=POOLED, grid_shape=(CELLS, CHANNELS))
        for first in range(0, photos, WRITE_ROWS):
            rows = np.arange(first, min(first + WRITE_ROWS, photos))
            pick = rng.choice(pool, size=len(rows), replace=len(rows) > pool)
            store.write_features(rows, pooled_pool[pick], grid_pool[pick])
    return time.perf_counter() - start


# ---- one measurement (a fresh subprocess) ----------------------------------------------------------------------


def peak_rss() -> int:
    """The peak resident set of this process so far, bytes (Linux's VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def open_data(path: Path, grid: bool, mode: str) -> CaptionData:
    """The train split as a measurement reads it: ``memory`` (today's loaders) or ``stream``/``stream0``."""
    if mode == "memory":
        split = load_split(path, "train")
        return split if not grid else CaptionData(load_grid(path, "train"), split.captions, split.image_idxs)
    return open_split(path, "train", grid=grid)


def train_steps(model, data: CaptionData, steps: int, prefetch: int, seed: int = 0) -> list[float]:
    """``steps`` updates as the trainer makes them (seeded permutation, batches in order, loss + Adam); returns
    the seconds of each step, reading included.

    Once ``Trainer._run_batches`` takes its batches from ``CaptionData.batches`` this is
    ``Trainer(model, data, None, TrainConfig(num_epochs=1, batch_size=BATCH_SIZE, seed=seed)).train()`` cut after
    ``steps`` batches (the one line to switch).
    """
    rng = np.random.default_rng(seed)
    rule = get_update_rule("adam")
    hyper = resolve_hyperparameters("adam", {"learning_rate": 1e-3})
    configs = {name: dict(hyper) for name in model.params}
    order = rng.permutation(len(data))[: steps * BATCH_SIZE]
    times, last = [], time.perf_counter()
    for _, features, captions in data.batches(order, BATCH_SIZE, prefetch=prefetch):
        _, grads = model.loss(features, captions, rng=rng)
        for name, w in model.params.items():
            model.params[name], configs[name] = rule(w, grads[name], configs[name])
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def read_seconds(data: CaptionData, steps: int, seed: int = 1) -> float:
    """Seconds per batch of reading alone (no training, no thread): ``steps`` batches of a fresh permutation, rows
    that the training steps did not read, so that the page cache does not flatter streaming."""
    order = np.random.default_rng(seed).permutation(len(data))[: steps * BATCH_SIZE]
    start = time.perf_counter()
    for _ in data.batches(order, BATCH_SIZE, prefetch=0):
        pass
    return (time.perf_counter() - start) / max(1, -(-len(order) // BATCH_SIZE))


def measure(path: Path, model_name: str, mode: str, steps: int) -> dict:
    """One measurement, in this (fresh) process: peak RSS and captions/s of ``steps`` training steps."""
    grid = model_name == "attention"
    with open_store(path) as store:
        word_to_idx = store.word_to_idx
    model = AttentionCaptioner(word_to_idx, rng=0) if grid else CaptioningRNN(word_to_idx, rng=0)
    start = time.perf_counter()
    data = open_data(path, grid, mode)
    load_seconds = time.perf_counter() - start
    with data:
        times = train_steps(model, data, steps, prefetch=0 if mode in ("memory", "stream0") else 1)
        read = read_seconds(data, steps)
    steady = times[1:] if len(times) > 1 else times  # the first step warms caches and starts the thread
    return {
        "peak_rss": peak_rss(),
        "captions_per_s": BATCH_SIZE * len(steady) / sum(steady),
        "load_s": load_seconds,
        "read_ms": 1000 * read,
        "steps": len(times),
        "load_avg": os.getloadavg(),
    }


def run_measurement(path: Path, model_name: str, mode: str, steps: int) -> dict:
    """:func:`measure` in a fresh Python process."""
    cmd = [sys.executable, __file__, "--measure", str(path), model_name, mode, "--steps", str(steps)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measurement {model_name} {mode} on {path.name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the run ---------------------------------------------------------------------------------------------------


def check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.05:
        sys.exit(
            f"bench_scale: {folder} has {free / GIB:.1f} GiB free, the synthetic files need {needed / GIB:.1f} GiB "
            "(+5%): free some space, pass --out on a bigger disk, or fewer --photos"
        )


def plan(photos: int) -> list[tuple[str, str, str]]:
    """(store, model, mode) of each measurement: memory is not tried where it cannot fit (COCO's grids)."""
    rows = []
    for model_name in ("lstm", "attention"):
        rows += [("flickr8k", model_name, "memory"), ("flickr8k", model_name, "stream")]
        if model_name == "lstm" or photos * CELLS * CHANNELS * 2 < 4 * GIB:
            rows.append(("coco", model_name, "memory"))
        rows += [("coco", model_name, "stream"), ("coco", model_name, "stream0")]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "rnncap-bench-scale")
    parser.add_argument("--photos", type=int, default=COCO["photos"], help="photos of the COCO-size file")
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement")
    parser.add_argument("--measure", nargs=3, metavar=("FILE", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), args.measure[1], args.measure[2], args.steps)))
        return
    captions = round(args.photos * COCO["captions"] / COCO["photos"])
    sizes = {"coco": (args.photos, captions), "flickr8k": (FLICKR8K["photos"], FLICKR8K["captions"])}
    args.out.mkdir(parents=True, exist_ok=True)
    check_space(args.out, sum(bytes_needed(p) for p, _ in sizes.values()))
    paths = {name: args.out / f"bench-scale-{name}.h5" for name in sizes}
    try:
        for name, (photos, count) in sizes.items():
            seconds = write_store(paths[name], photos, count)
            size = paths[name].stat().st_size
            print(f"wrote {paths[name]}: {photos:,} photos, {count:,} captions, {size / 1e9:.2f} GB in {seconds:.0f} s")
        header = f"{'store':9} {'model':9} {'features':9} {'peak RSS':>10} {'captions/s':>10} {'load s':>7}"
        print(f"{header} {'read ms':>8}  load avg")
        for store_name, model_name, mode in plan(args.photos):
            r = run_measurement(paths[store_name], model_name, mode, args.steps)
            label = {"memory": "memory", "stream": "streamed", "stream0": "no thread"}[mode]
            print(
                f"{store_name:9} {model_name:9} {label:9} {r['peak_rss'] / GIB:8.2f} GiB {r['captions_per_s']:10.1f} "
                f"{r['load_s']:7.1f} {r['read_ms']:8.1f}  {' '.join(f'{x:.2f}' for x in r['load_avg'])}",
                flush=True,
            )
    finally:  # also after Ctrl-C: the files are benchmark artefacts, 26 GB of them
        for path in paths.values():
            path.unlink(missing_ok=True)
        print(f"deleted {', '.join(str(p) for p in paths.values())}")


if __name__ == "__main__":
    main()
