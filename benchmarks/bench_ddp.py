"""Data-parallel training: captions per second of the Trainer at 1 and 2 processes, and what the all-reduce costs.

For each number of processes P, P fresh processes (torch.multiprocessing, gloo on loopback, ``OPENBLAS_NUM_THREADS``
threads each) train the same model with the Trainer (:mod:`rnncap.train.distributed`) for a few epochs of
``--steps`` global batches of ``--batch-size`` captions each (a slice of the training captions); an epoch's time
after the first (warm-up) gives the step time and the throughput. Alone, the all-reduce of the gradient buffer
(every parameter and the loss, float32) is timed ``--reduces`` times. Printed: the parameter count, the bytes
summed per step, step and all-reduce times, captions/s, the scaling efficiency ``throughput(P) / (P x
throughput(1))`` and the share of a core process 0 had while it trained (CPU time / wall time: below 100% it
waited for a core, or in the all-reduce), with the load average before and after.

The data: the pooled features and captions of a prepared file's train split (``--data``, by default
/work/prepared/flickr8k.h5 where it exists), or random ones (without one, or with ``--random``) of Flickr8k's
shapes (6000 photos of 1280 floats or 49 x 1280 grids, captions of 17 ids, 2992 words) or of those asked for
(``--words 10000 --cells 81``: COCO's). The model: the recipe's LSTM (W = H = 512, dropout 0.5) or, with
``--attention``, the attention model on the grids.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_ddp.py                 # 1 and 2 processes, a few steps each
    python benchmarks/bench_ddp.py --steps 10 --epochs 3 --processes 1 2 4
    python benchmarks/bench_ddp.py --random --words 10000 --photos 512        # COCO's vocabulary, the LSTM
    python benchmarks/bench_ddp.py --random --words 10000 --cells 81 --photos 512 --attention   # and attention
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

from rnncap.models import AttentionConfig, RNNConfig, build_model
from rnncap.text import END_ID, NULL_ID, START_ID
from rnncap.train import CaptionData, TrainConfig, Trainer
from rnncap.train.distributed import GradientReducer

DEFAULT_DATA = Path("/work/prepared/flickr8k.h5")
FLICKR8K = {"photos": 6000, "captions": 30000, "length": 17, "words": 2992, "dim": 1280, "cells": 49}


def load_data(args: argparse.Namespace) -> tuple[CaptionData, dict[str, int], str]:
    """The train split of ``args.data`` (pooled features, or grids), or random data of the shapes asked for."""
    path, grid = args.data, args.attention
    if not args.random and path.is_file():
        from rnncap.data import open_store

        with open_store(path) as store:
            split = store.load_split("train")
            words = store.word_to_idx
            if grid:
                split = CaptionData(store.load_grid("train"), split.captions, split.image_idxs)
        return split, words, str(path)
    rng = np.random.default_rng(0)
    shape = (args.photos, args.cells, FLICKR8K["dim"]) if grid else (args.photos, FLICKR8K["dim"])
    features = rng.standard_normal(shape, dtype=np.float32).astype(np.float16 if grid else np.float32)
    K, T = args.steps * args.batch_size, FLICKR8K["length"]
    lengths = rng.integers(8, T - 1, size=K)  # words per caption, then <END>
    captions = rng.integers(4, args.words, size=(K, T)).astype(np.int32)
    captions[:, 0] = START_ID
    captions[np.arange(K), lengths + 1] = END_ID
    captions[np.arange(T)[None, :] > lengths[:, None] + 1] = NULL_ID
    words = {w: i for i, w in enumerate(["<NULL>", "<START>", "<END>", "<UNK>"])}
    words |= {f"w{i}": i for i in range(4, args.words)}
    source = f"random: {args.photos} photos of {shape[1:]}, captions of {T} ids, {args.words} words"
    return CaptionData(features, captions, rng.integers(0, shape[0], size=K)), words, source


def worker(rank: int, world: int, port: int, args: argparse.Namespace, result: Path) -> None:
    """One process: train ``args.epochs`` epochs of ``args.steps`` global batches, then time all-reduces alone."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from rnncap.apps.distributed import TorchCommunicator

    communicator = TorchCommunicator("gloo")
    data, words, source = load_data(args)
    K = args.steps * args.batch_size
    train = CaptionData(data.features, data.captions[:K], data.image_idxs[:K])
    shape = train.features.shape
    settings = (
        AttentionConfig(input_dim=shape[2], num_locations=shape[1]) if args.attention else RNNConfig(input_dim=shape[1])
    )
    model = build_model(settings, words, rng=0)
    config = TrainConfig(num_epochs=args.epochs, batch_size=args.batch_size, patience=None, progress=False, plot=False)
    wall, cpu = time.perf_counter(), time.process_time()
    history = Trainer(model, train, None, config, communicator=communicator).train()
    cpu_share = (time.process_time() - cpu) / (time.perf_counter() - wall)  # < 1: the process waited for a core

    reducer = GradientReducer(model.params, communicator)
    grads = {name: np.ones_like(value) for name, value in model.params.items()}
    reduce_times = []
    for _ in range(args.reduces):
        start = time.perf_counter()
        reducer.reduce(1.0, grads, 1.0 / world)
        reduce_times.append(time.perf_counter() - start)
    communicator.barrier()
    if rank == 0:
        epoch_time = float(np.median(history["epoch_time"][1:]))  # the first epoch warms up
        report = {
            "processes": world,
            "source": source,
            "model": type(model).__name__,
            "parameters": int(sum(value.size for value in model.params.values())),
            "buffer_values": reducer.num_values,
            "step_s": epoch_time / args.steps,
            "captions_per_s": K / epoch_time,
            "all_reduce_s": float(np.median(reduce_times)),
            "epoch_times": history["epoch_time"],
            "cpu_share": cpu_share,
        }
        result.write_text(json.dumps(report))
    communicator.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a prepared file (default: %(default)s)")
    parser.add_argument("--random", action="store_true", help="random data, even where --data exists")
    parser.add_argument("--words", type=int, default=FLICKR8K["words"], help="random data: vocabulary (COCO: 10000)")
    parser.add_argument("--photos", type=int, default=FLICKR8K["photos"], help="random data: photos")
    parser.add_argument("--cells", type=int, default=FLICKR8K["cells"], help="random data: grid cells (COCO: 81)")
    parser.add_argument("--attention", action="store_true", help="the attention model on grids, not the LSTM")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=4, help="global batches per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="epochs; the first warms up")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--reduces", type=int, default=5, help="all-reduces of the buffer timed alone")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first warms up")

    import torch.multiprocessing as mp

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # read by each process's NumPy as it starts
    print(f"load average before: {os.getloadavg()}; OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        for world in args.processes:
            result = Path(folder) / f"{world}.json"
            mp.spawn(worker, args=(world, free_port(), args, result), nprocs=world)
            reports.append(json.loads(result.read_text()))
    first = reports[0]
    print(f"data: {first['source']}; model: {first['model']}, {first['parameters']:,} parameters")
    print(f"summed per step: {first['buffer_values']:,} float32 = {4 * first['buffer_values'] / 1e6:.1f} MB")
    print(f"global batch {args.batch_size}, {args.steps} steps per epoch, {args.epochs} epochs")
    print("processes  step (s)  captions/s  all-reduce (s)  all-reduce / step  efficiency  CPU share of process 0")
    for report in reports:
        scaling = report["captions_per_s"] / (report["processes"] * first["captions_per_s"] / first["processes"])
        print(
            f"{report['processes']:9d}  {report['step_s']:8.3f}  {report['captions_per_s']:10.1f}  "
            f"{report['all_reduce_s']:14.4f}  {report['all_reduce_s'] / report['step_s']:17.1%}  {scaling:10.1%}  "
            f"{report['cpu_share']:22.0%}"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
