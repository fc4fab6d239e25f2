"""The NumPy attention captioner against its PyTorch twin, on the CPU, in one run on one machine.

Measures, for float32 models of the sizes people train ("Show, Attend and Tell" on a 9 x 9 EfficientNet-Lite2 grid):

- the training step: loss + backward + Adam update (``rnncap.optim.adam`` against ``torch.optim.Adam``), captions/s;
- greedy sampling for ``max_length = T`` tokens, captions/s.

The method is ``bench_engine.py``'s, whose helpers this script imports: a warm-up, then the median of repeats with
the engines alternating, the same number of threads for both (``torch.set_num_threads`` and threadpoolctl's BLAS
limit), and a warning when other processes load the CPU.

Usage::

    python benchmarks/bench_attention.py                         # the realistic configuration, all cores
    python benchmarks/bench_attention.py --config small --repeats 3
    python benchmarks/bench_attention.py --profile               # where the NumPy step spends its time
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_engine.py sits beside this file

from bench_engine import (  # noqa: E402
    ADAM_SOURCE,
    BATCHES,
    LEARNING_RATE,
    TESTS,
    alternate,
    cpu_counters,
    gemm_rates,
    machine_description,
    make_captions,
    numpy_train_step,
    others_cpu_fraction,
    profile_numpy_step,
    torch_train_step,
)
from rnncap.models import AttentionCaptioner  # noqa: E402


@dataclass(frozen=True)
class Config:
    name: str
    N: int  # captions per batch
    T: int  # time steps: captions are (N, T + 1), <START> included
    L: int  # grid locations
    D: int  # channels of a location
    W: int  # word vector width
    H: int  # hidden width
    A: int  # attention width
    V: int  # vocabulary size


CONFIGS = {
    c.name: c
    for c in (
        # Flickr8k through EfficientNet-Lite2: 9 x 9 x 1280 grids, 2,541 words, captions of at most 16 words.
        Config("flickr-attention", N=128, T=17, L=81, D=1280, W=512, H=512, A=512, V=2541),
        Config("small", N=32, T=12, L=49, D=256, W=128, H=128, A=128, V=500),
    )
}


def build_numpy(cfg: Config, batch: str = "realistic", seed: int = 0):
    """The NumPy model (float32, default initialisation) and a batch (see ``bench_engine.BATCHES``): features
    (N, L, D) float32, captions (N, T + 1) int32."""
    vocab = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3} | {f"w{i}": i for i in range(4, cfg.V)}
    model = AttentionCaptioner(vocab, cfg.D, cfg.L, cfg.W, cfg.H, cfg.A, dtype=np.float32, rng=seed)
    rng = np.random.default_rng(seed + 1)
    # Grid features are post-activation CNN outputs: non-negative, of order one.
    features = np.abs(rng.standard_normal((cfg.N, cfg.L, cfg.D))).astype(np.float32)
    return model, features, make_captions(cfg, batch, rng)


def twin_module():
    """``tests/torch_attention_twin.py``, imported on demand (torch is loaded only by the torch side)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import torch_attention_twin

    return torch_attention_twin


def build_torch(model, features, captions):
    """The twin holding the NumPy model's weights, and the same batch as tensors."""
    import torch

    twin = twin_module().from_numpy_params(model.params, model.alpha_reg, torch.float32)
    return twin, torch.from_numpy(features), torch.from_numpy(captions).long()


def bench_config(cfg: Config, warmup: int, repeats: int) -> dict[str, dict[str, float]]:
    import torch

    result: dict[str, dict[str, float]] = {}
    model, features, captions = build_numpy(cfg)
    twin = twin_module().from_numpy_params(model.params, model.alpha_reg, torch.float32)
    samples: dict[str, np.ndarray] = {}

    def numpy_sample():
        samples["numpy"] = model.sample(features, max_length=cfg.T)

    def torch_sample():
        samples["torch"] = twin_module().sample(twin, torch.from_numpy(features), max_length=cfg.T)[0]

    seconds = alternate({"numpy": numpy_sample, "torch": torch_sample}, warmup, repeats)
    result["sample"] = {side: cfg.N / s for side, s in seconds.items()}
    result["sample_agree"] = {"rows": float((samples["numpy"] == samples["torch"]).all(axis=1).mean())}

    for batch in BATCHES:
        model, features, captions = build_numpy(cfg, batch)
        steps = {
            "numpy": numpy_train_step(model, features, captions),
            "torch": torch_train_step(*build_torch(model, features, captions)),
        }
        result[f"first_loss_{batch}"] = {side: fn() for side, fn in steps.items()}  # same weights: same loss
        seconds = alternate(steps, warmup, repeats)
        result[f"step_{batch}"] = {side: cfg.N / s for side, s in seconds.items()}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=[*CONFIGS, "all"], default="flickr-attention")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before the repeats")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the NumPy step")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--repeats and --threads must be >= 1, --warmup >= 0")
    configs = list(CONFIGS.values()) if args.config == "all" else [CONFIGS[args.config]]

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = [
        "| config | measure | NumPy engine | PyTorch twin | NumPy / PyTorch |",
        "|---|---|---:|---:|---:|",
    ]
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(machine_description(args.threads))
        counters = cpu_counters()
        time.sleep(1)
        busy = others_cpu_fraction(counters, cpu_counters())
        if busy is not None and busy > 0.1:
            print(f"WARNING: other processes used {busy:.0%} of the CPU before the run: timings will not be reliable.")
        print(f"Optimiser: {ADAM_SOURCE} vs torch.optim.Adam (lr {LEARNING_RATE}); float32; random weights and grids.")
        print(f"Median of {args.repeats} repeats after {args.warmup} warm-up rounds, numpy and torch alternating.")
        counters = cpu_counters()
        gemm = gemm_rates()
        print(f"Machine float32 GEMM rate (2048^3): numpy {gemm['numpy']:.0f}, torch {gemm['torch']:.0f} GFLOP/s")
        for cfg in configs:
            r = bench_config(cfg, args.warmup, args.repeats)
            loss = r["first_loss_realistic"]
            print(
                f"{cfg.name}: N={cfg.N} T={cfg.T} L={cfg.L} D={cfg.D} W={cfg.W} H={cfg.H} A={cfg.A} V={cfg.V}; "
                f"first-step loss numpy {loss['numpy']:.4f} torch {loss['torch']:.4f}; greedy captions identical "
                f"for {r['sample_agree']['rows']:.0%} of images",
                flush=True,
            )
            for key, label in (
                ("step_realistic", "training step, realistic padding: captions/s"),
                ("step_full", "training step, no padding (worst case): captions/s"),
                ("sample", "greedy sampling, max_length T: captions/s"),
            ):
                ours, theirs = r[key]["numpy"], r[key]["torch"]
                rows.append(f"| {cfg.name} | {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |")
    busy = others_cpu_fraction(counters, cpu_counters())
    print(
        f"(benchmark ran {time.perf_counter() - started:.0f} s; other processes used "
        f"{'?' if busy is None else f'{busy:.0%}'} of the CPU meanwhile)"
    )
    if busy is not None and busy > 0.1:
        print("WARNING: the machine was shared during the run: the timings are not reliable, run again when idle.")
    print()
    print("\n".join(rows))
    print("\nNumPy / PyTorch above 1: NumPy is faster. The NumPy engine skips the vocabulary projection of padded")
    print("positions and trims all-padding columns; the twin, like plain PyTorch code, computes every position.")
    if args.profile:
        for cfg in configs:
            profile_numpy_step(cfg, args.threads, build=build_numpy)


if __name__ == "__main__":
    main()
