"""The NumPy engine against its PyTorch twin, on the CPU (or with ``--device cuda`` on one GPU), in one run on one
machine.

For each configuration (float32 LSTM captioners of the sizes people train):

- (a) the training step: loss + backward + Adam update (``rnncap.optim.adam`` against ``torch.optim.Adam``);
- (b) beam search with 3 beams for ``max_length = T`` tokens;
- the extra memory a training step needs at its peak, measured the same way for both (see :func:`memory_probe`);
- the achieved GEMM rate of the step (FLOPs counted analytically) beside the machine's float32 GEMM rate.

Measurements alternate between the engines (numpy then torch, torch then numpy, ...) after a warm-up, and the
median of the repeats is reported, so that machine noise and thermal drift hit both sides alike. Both sides get
the same number of threads: ``torch.set_num_threads`` for torch (MKL/oneDNN/OpenMP) and threadpoolctl's BLAS
limit for NumPy's OpenBLAS. The output ends with a markdown table that can be pasted into the README.

Usage::

    python benchmarks/bench_engine.py                      # both configurations, all cores
    python benchmarks/bench_engine.py --config cs231n-lstm --repeats 9 --threads 1
    python benchmarks/bench_engine.py --config flickr-lstm --profile   # where the NumPy step spends its time
    python benchmarks/bench_engine.py --device cuda        # on a GPU: the engine through CuPy vs the twin on CUDA

``--device cuda`` (:func:`bench_cuda`) runs the same engine code through CuPy (``rnncap[gpu]``) against the twins
on the same GPU, whose LSTM is ``torch.nn.LSTM`` (cuDNN): captions/s of the flickr-lstm and flickr-attention
training steps (realistic padding) and of beam search (greedy sampling too for attention, whose twin has no beam
search). Features and weights are resident on the GPU for both sides; every timed call ends with a device
synchronisation (CUDA runs asynchronously). It needs a CUDA build of torch for the twin's side, and measures the
engine alone without one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from rnncap import CaptioningRNN

TESTS = Path(__file__).resolve().parents[1] / "tests"  # torch_twin.py lives with the tests

try:
    from rnncap.optim import adam

    ADAM_SOURCE = "rnncap.optim.adam"
except ImportError:  # the library's optimiser is not there yet: CS231n's reference update rule, the same maths

    def adam(w, dw, config=None):
        config = {} if config is None else config
        config.setdefault("learning_rate", 1e-3)
        config.setdefault("beta1", 0.9)
        config.setdefault("beta2", 0.999)
        config.setdefault("epsilon", 1e-8)
        config.setdefault("m", np.zeros_like(w))
        config.setdefault("v", np.zeros_like(w))
        config.setdefault("t", 0)
        config["t"] += 1
        config["m"] = config["beta1"] * config["m"] + (1 - config["beta1"]) * dw
        config["v"] = config["beta2"] * config["v"] + (1 - config["beta2"]) * dw * dw
        m_hat = config["m"] / (1 - config["beta1"] ** config["t"])
        v_hat = config["v"] / (1 - config["beta2"] ** config["t"])
        return w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"]), config

    ADAM_SOURCE = "CS231n reference adam in this file (rnncap.optim.adam not found)"


@dataclass(frozen=True)
class Config:
    name: str
    N: int  # captions per batch
    T: int  # time steps: captions are (N, T + 1), <START> included
    D: int  # image feature width
    W: int  # word vector width
    H: int  # hidden width
    V: int  # vocabulary size
    cell_type: str = "lstm"


CONFIGS = {
    c.name: c
    for c in (
        Config("cs231n-lstm", N=50, T=16, D=512, W=256, H=512, V=1004),
        Config("flickr-lstm", N=128, T=20, D=1280, W=512, H=512, V=3000),
    )
}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
BEAM = 3
LEARNING_RATE = 1e-3
BATCHES = {
    "realistic": "<START>, T/3..T-1 random words, <END>, <NULL> padding",
    "full": "<START>, T-1 random words, <END>: no padding, every position counts (the worst case)",
}


# ---------------------------------------------------------------------------------------------- the two sides


def build_numpy(cfg: Config, batch: str = "realistic", seed: int = 0):
    """The NumPy model (float32, default initialisation) and a batch (see ``BATCHES``): features (N, D),
    captions (N, T + 1) int32."""
    vocab = {"<NULL>": 0, "<START>": 1, "<END>": 2, "<UNK>": 3} | {f"w{i}": i for i in range(4, cfg.V)}
    model = CaptioningRNN(vocab, cfg.D, cfg.W, cfg.H, cfg.cell_type, dtype=np.float32, rng=seed)
    rng = np.random.default_rng(seed + 1)
    features = rng.standard_normal((cfg.N, cfg.D)).astype(np.float32)
    return model, features, make_captions(cfg, batch, rng)


def make_captions(cfg: Any, batch: str, rng: np.random.Generator) -> np.ndarray:
    """(N, T + 1) int32 captions of ``batch`` kind (see ``BATCHES``): <START>, random words, <END>, <NULL>s."""
    captions = np.zeros((cfg.N, cfg.T + 1), dtype=np.int32)  # <NULL> = 0 everywhere first
    captions[:, 0] = 1  # <START>
    lengths = rng.integers(cfg.T // 3, cfg.T, size=cfg.N) if batch == "realistic" else np.full(cfg.N, cfg.T - 1)
    for row, n in enumerate(lengths):  # n <= T - 1 words, then <END>
        captions[row, 1 : 1 + n] = rng.integers(3, cfg.V, size=n)
        captions[row, 1 + n] = 2
    return captions


def numpy_train_step(model, features, captions) -> Callable[[], float]:
    """Loss, backward and Adam on any rnncap model (CaptioningRNN or AttentionCaptioner)."""
    configs = {name: {"learning_rate": LEARNING_RATE} for name in model.params}

    def step() -> float:
        loss, grads = model.loss(features, captions)
        for name, dw in grads.items():
            model.params[name], configs[name] = adam(model.params[name], dw, configs[name])
        return loss

    return step


def twin_module():
    """``tests/torch_twin.py``, imported on demand (torch is loaded only by the torch side)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import torch_twin

    return torch_twin


def build_torch(model, features, captions):
    """The twin holding the NumPy model's weights, and the same batch as tensors."""
    import torch

    twin = twin_module().from_numpy_params(model.params, model.cell_type, torch.float32)
    return twin, torch.from_numpy(features), torch.from_numpy(captions).long()


def torch_train_step(twin, features, captions) -> Callable[[], float]:
    import torch

    opt = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=LEARNING_RATE)

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        loss = twin(features, captions)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def step_gemm_flops(cfg: Config) -> int:
    """Matrix-product FLOPs (2 per multiply-add) of one training step, forward + backward.

    This is the dense step, which the twin computes whatever the padding; the NumPy engine skips the
    vocabulary projection of padded positions, so the count is exact for both only on the ``full`` batch.

    Forward: the projection (N, D) x (D, H); the input part (NT, W) x (W, kH); the recurrent part (N, H) x
    (H, kH) at each of the T steps; the vocabulary (NT, H) x (H, V). Backward: two products per forward product
    (input gradient and weight gradient), except the projection's input gradient, which nobody needs.
    Elementwise work (gates, softmax, Adam) is not counted.
    """
    N, T, D, W, H, V, kH = cfg.N, cfg.T, cfg.D, cfg.W, cfg.H, cfg.V, GATES[cfg.cell_type] * cfg.H
    proj, inputs, recurrent, vocab = 2 * N * D * H, 2 * N * T * W * kH, 2 * N * T * H * kH, 2 * N * T * H * V
    return 3 * (proj + inputs + recurrent + vocab) - proj


# ---------------------------------------------------------------------------------------------- measuring


def alternate(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in alternating order: A B, B A, A B, ... (warm-up rounds dropped)."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            fns[name]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


def gemm_rates(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """The machine's float32 GEMM rate (GFLOP/s) through NumPy (OpenBLAS) and torch (MKL), (n, n) x (n, n)."""
    import torch

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
    seconds = alternate({"numpy": lambda: a @ b, "torch": lambda: ta @ tb}, warmup=1, repeats=repeats)
    return {side: 2 * size**3 / s / 1e9 for side, s in seconds.items()}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_probe(side: str, cfg: Config, threads: int, batch: str) -> dict[str, float]:
    """Peak extra resident memory of one training step, in a process of its own (run via ``--memory-probe``).

    The fair measure for both sides is the operating system's: resident set size (RSS), which counts every
    byte either engine touches (NumPy arrays, torch tensors and autograd buffers, BLAS/oneDNN workspaces)
    whichever allocator made it. ``tracemalloc`` sees NumPy's arrays but not torch's allocator, and torch's
    profiler sees torch's but not NumPy's, so neither can compare the two. The probe builds the model, the
    optimiser and the batch, runs two warm-up steps (Adam's moments, lazy initialisation, thread pools), then
    resets the kernel's high-water mark (``/proc/self/clear_refs`` 5) and reports ``VmHWM - VmRSS`` over one
    step: memory the step itself needs beyond the steady state of weights, moments and batch.

    The parent starts the probe with ``MALLOC_MMAP_THRESHOLD_`` fixed at 128 KiB: glibc then serves every large
    block with mmap and unmaps it when freed (by default it raises that threshold after the first free, and the
    freed heap memory of the warm-up steps would stay resident, hiding part of the next step's peak). Torch's
    CPU allocator and NumPy both allocate through malloc, so the rule is the same for both.
    """
    with threadpool_limits(limits=threads, user_api="blas"):
        model, features, captions = build_numpy(cfg, batch)
        if side == "numpy":
            step = numpy_train_step(model, features, captions)
        else:
            import torch

            torch.set_num_threads(threads)
            step = torch_train_step(*build_torch(model, features, captions))
            del model  # the numpy weights are not part of the torch side's steady state
        for _ in range(2):
            step()
        gc.collect()
        before = _rss_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        step()
        peak = _rss_kib("VmHWM")
    return {"peak_extra_mib": (peak - before) / 1024, "steady_rss_mib": before / 1024}


def run_memory_probe(side: str, cfg: Config, threads: int, batch: str) -> dict[str, float]:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(128 * 1024))
    cmd = [
        sys.executable,
        __file__,
        "--memory-probe",
        side,
        "--config",
        cfg.name,
        "--threads",
        str(threads),
        "--batch",
        batch,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- the run


def bench_config(cfg: Config, warmup: int, repeats: int, threads: int) -> dict[str, dict[str, float]]:
    torch_twin = twin_module()
    model, features, captions = build_numpy(cfg)
    twin, t_features, t_captions = build_torch(model, features, captions)
    result: dict[str, dict[str, float]] = {}

    # (b) beam search first, while both sides hold identical weights, so that their captions can be compared
    beams: dict[str, np.ndarray] = {}

    def numpy_beam():
        beams["numpy"] = model.beam_search(features, beam_size=BEAM, max_length=cfg.T)

    def torch_beam():
        beams["torch"] = torch_twin.beam_search(twin, t_features, beam_size=BEAM, max_length=cfg.T)

    seconds = alternate({"numpy": numpy_beam, "torch": torch_beam}, warmup, repeats)
    result["beam"] = {side: cfg.N / s for side, s in seconds.items()}
    result["beam_agree"] = {"rows": float((beams["numpy"] == beams["torch"]).all(axis=1).mean())}
    result["beam_steps"] = {"max": float((beams["numpy"] != 0).sum(axis=1).max())}

    # (a) the training step, on a realistic batch and on the worst case without padding
    for batch in BATCHES:
        model, features, captions = build_numpy(cfg, batch)
        twin, t_features, t_captions = build_torch(model, features, captions)
        steps = {
            "numpy": numpy_train_step(model, features, captions),
            "torch": torch_train_step(twin, t_features, t_captions),
        }
        result[f"first_loss_{batch}"] = {side: fn() for side, fn in steps.items()}  # same weights: same loss
        seconds = alternate(steps, warmup, repeats)
        result[f"step_{batch}"] = {side: cfg.N / s for side, s in seconds.items()}
        if batch == "full":  # both engines do exactly the counted FLOPs only here
            result["step_gflops"] = {side: step_gemm_flops(cfg) / s / 1e9 for side, s in seconds.items()}
        result[f"memory_{batch}"] = {
            side: run_memory_probe(side, cfg, threads, batch)["peak_extra_mib"] for side in ("numpy", "torch")
        }
    return result


def profile_numpy_step(
    cfg: Any, threads: int, top: int = 18, build: Callable = build_numpy, make_step: Callable | None = None
) -> None:
    """cProfile of NumPy training steps, by own time: which layer functions (and the GEMMs inside them) cost.

    ``build(cfg) -> (model, features, captions)`` and ``make_step(model, features, captions) -> step`` default to
    this benchmark's CaptioningRNN; bench_attention.py passes its own.
    """
    import cProfile
    import pstats

    make_step = numpy_train_step if make_step is None else make_step
    with threadpool_limits(limits=threads, user_api="blas"):
        model, features, captions = build(cfg)
        step = make_step(model, features, captions)
        step()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(5):
            step()
        profiler.disable()
    print(f"\ncProfile of 5 NumPy training steps, {cfg.name}, {threads} threads (tottime = own time, GEMMs included)")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(top)


def cpu_counters() -> tuple[float, float, float] | None:
    """(all CPUs' elapsed seconds, their busy seconds, this process's and its children's CPU seconds); Linux."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    own = os.times()
    total = sum(ticks[:8]) / hz  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total, total - (ticks[3] + ticks[4]) / hz, own.user + own.system + own.children_user + own.children_system


def others_cpu_fraction(before, after) -> float | None:
    """The share of all CPU time between two :func:`cpu_counters` that other processes used: a neighbour's load
    slows both engines, and unevenly (oversubscribed BLAS threads spin and wait)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0]))


def machine_description(threads: int) -> str:
    import torch

    blas = [
        f"{i['internal_api']} {i.get('version')} ({i.get('architecture', '?')})"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {threads} threads; Python {platform.python_version()}, "
        f"NumPy {np.__version__} with {', '.join(blas) or 'unknown BLAS'}; torch {torch.__version__} "
        f"(BLAS: MKL {'yes' if torch.backends.mkl.is_available() else 'no'}, "
        f"oneDNN {'yes' if torch.backends.mkldnn.is_available() else 'no'})"
    )


# ---------------------------------------------------------------------------------------------- --device cuda

CUDA_CONFIGS = {"flickr": ("flickr-lstm", "flickr-attention"), "small": ("cs231n-lstm", "small")}


def synced(fn: Callable[[], object], sync: Callable[[], object]) -> Callable[[], object]:
    """``fn`` then ``sync``: a timed call ends when the device has finished its work, not when it was queued."""

    def run() -> object:
        out = fn()
        sync()
        return out

    return run


def bench_cuda(which: str, warmup: int, repeats: int) -> None:
    """The NumPy engine through CuPy against the PyTorch twins on the same GPU; prints a markdown table."""
    import torch

    import bench_attention  # here: it imports this module
    from rnncap.backend import module_for

    cupy = module_for("cuda")  # the clear DeviceError without CuPy or a GPU
    twin_on_gpu = torch.cuda.is_available()
    gpu = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"GPU: {gpu.decode() if isinstance(gpu, bytes) else gpu}; CuPy {cupy.__version__}; torch {torch.__version__}")
    if twin_on_gpu:
        print(f"torch on CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    else:
        print("torch has no CUDA here (a CPU build): the twins' side is skipped, the engine is measured alone")
    print(f"float32, realistic padding; median of {repeats} repeats after {warmup} warm-up rounds, sides alternating")
    lstm_name, attention_name = CUDA_CONFIGS[which]
    rows = [
        "| config | measure | NumPy engine (CuPy) | PyTorch twin (CUDA) | engine / twin |",
        "|---|---|---:|---:|---:|",
    ]
    for cfg, module in (
        (
            CONFIGS[lstm_name],
            SimpleNamespace(build_numpy=build_numpy, build_torch=build_torch, twin_module=twin_module),
        ),
        (bench_attention.CONFIGS[attention_name], bench_attention),
    ):
        for label, seconds in _cuda_measures(
            cfg, module, twin_on_gpu, cupy.cuda.runtime.deviceSynchronize, warmup, repeats
        ):
            ours = cfg.N / seconds["numpy"]
            theirs = cfg.N / seconds["torch"] if "torch" in seconds else None
            twin_text, ratio = ("-", "-") if theirs is None else (f"{theirs:.0f}", f"{ours / theirs:.2f}")
            rows.append(f"| {cfg.name} | {label} | {ours:.0f} | {twin_text} | {ratio} |")
            print(rows[-1], flush=True)
    print()
    print("\n".join(rows))
    print("\nengine / twin: above 1, the NumPy engine through CuPy is faster. The attention twin has no beam search.")


def _cuda_measures(
    cfg: Any, module: Any, twin_on_gpu: bool, ours_sync: Callable[[], object], warmup: int, repeats: int
) -> list[tuple[str, dict[str, float]]]:
    """Median seconds of each side for one configuration on the GPU: beam search, greedy sampling (attention),
    then the training step (last: it changes the weights). ``module``: the LSTM's functions of this file or
    bench_attention, whose ``build_numpy``, ``build_torch`` and ``twin_module`` build the sides."""
    import torch

    from rnncap.backend import to_device

    model, features, captions = module.build_numpy(cfg)
    twin = None
    if twin_on_gpu:  # built from the host weights, before the model moves
        twin, t_features, t_captions = module.build_torch(model, features, captions)
        twin, t_features, t_captions = twin.cuda(), t_features.cuda(), t_captions.cuda()
    model.to("cuda")
    features = to_device(features, "cuda")  # resident on the GPU for both sides
    twins, attends = module.twin_module(), model.attends
    sides: list[tuple[str, dict[str, Callable[[], object]]]] = []
    beam = {"numpy": synced(lambda: model.beam_search(features, beam_size=BEAM, max_length=cfg.T), ours_sync)}
    if twin is not None and not attends:
        beam["torch"] = synced(
            lambda: twins.beam_search(twin, t_features, beam_size=BEAM, max_length=cfg.T), torch.cuda.synchronize
        )
    sides.append((f"beam-{BEAM} search, max_length T: captions/s", beam))
    if attends:
        greedy = {"numpy": synced(lambda: model.sample(features, max_length=cfg.T), ours_sync)}
        if twin is not None:
            greedy["torch"] = synced(lambda: twins.sample(twin, t_features, max_length=cfg.T), torch.cuda.synchronize)
        sides.append(("greedy sampling, max_length T: captions/s", greedy))
    step = {"numpy": synced(numpy_train_step(model, features, captions), ours_sync)}
    if twin is not None:
        step["torch"] = synced(torch_train_step(twin, t_features, t_captions), torch.cuda.synchronize)
    sides.append(("training step (loss, backward, Adam): captions/s", step))
    return [(label, alternate(fns, warmup, repeats)) for label, fns in sides]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--config",
        choices=[*CONFIGS, "all", *CUDA_CONFIGS],
        default=None,
        help="default: all (the CPU run); with --device cuda: flickr (default) or small",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the engine through CuPy vs the twins on CUDA"
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds before the repeats")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the NumPy step")
    parser.add_argument("--memory-probe", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--batch", choices=list(BATCHES), default="realistic", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--repeats and --threads must be >= 1, --warmup >= 0")
    if args.device == "cuda":
        if args.config not in (None, *CUDA_CONFIGS):
            parser.error(f"with --device cuda, --config is one of {list(CUDA_CONFIGS)}")
        from rnncap.backend import DeviceError

        try:
            bench_cuda(args.config or "flickr", args.warmup, args.repeats)
        except DeviceError as exc:
            parser.exit(1, f"bench_engine.py: error: {exc}\n")
        return
    if args.config in CUDA_CONFIGS:
        parser.error(f"--config {args.config} is for --device cuda")
    args.config = args.config or "all"
    configs = list(CONFIGS.values()) if args.config == "all" else [CONFIGS[args.config]]

    if args.memory_probe:  # child process of run_memory_probe: one line of JSON
        print(json.dumps(memory_probe(args.memory_probe, configs[0], args.threads, args.batch)))
        return

    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        print(machine_description(args.threads))
        counters = cpu_counters()
        time.sleep(1)
        busy = others_cpu_fraction(counters, cpu_counters())
        if busy is not None and busy > 0.1:
            print(f"WARNING: other processes used {busy:.0%} of the CPU before the run: timings will not be reliable.")
        print(
            f"Optimiser: {ADAM_SOURCE} vs torch.optim.Adam (lr {LEARNING_RATE}); float32; random weights and "
            "features; captions (N, T+1):"
        )
        for batch, description in BATCHES.items():
            print(f"  {batch}: {description}")
        print(
            "Beam search runs on the realistic model's weights, max_length = T; memory = peak extra RSS of one "
            "step in a fresh process per side."
        )
        print(f"Median of {args.repeats} repeats after {args.warmup} warm-up rounds, numpy and torch alternating.")
        counters = cpu_counters()
        gemm = gemm_rates()
        print(
            f"Machine float32 GEMM rate (2048^3): numpy {gemm['numpy']:.0f} GFLOP/s, torch {gemm['torch']:.0f} GFLOP/s",
            flush=True,
        )
        results = {}
        for cfg in configs:
            results[cfg.name] = r = bench_config(cfg, args.warmup, args.repeats, args.threads)
            loss = r["first_loss_realistic"]
            print(
                f"{cfg.name}: N={cfg.N} T={cfg.T} D={cfg.D} W={cfg.W} H={cfg.H} V={cfg.V}; first-step loss numpy "
                f"{loss['numpy']:.4f} torch {loss['torch']:.4f}; beam captions identical "
                f"for {r['beam_agree']['rows']:.0%} of images; longest beam caption {r['beam_steps']['max']:.0f} "
                f"tokens",
                flush=True,
            )
    busy = others_cpu_fraction(counters, cpu_counters())
    print(
        f"(benchmark ran {time.perf_counter() - started:.0f} s; other processes used "
        f"{'?' if busy is None else f'{busy:.0%}'} of the CPU meanwhile)"
    )
    if busy is not None and busy > 0.1:
        print("WARNING: the machine was shared during the run: the timings are not reliable, run again when idle.")
    print()
    print(markdown_table(configs, results, gemm))
    if args.profile:
        for cfg in configs:
            profile_numpy_step(cfg, args.threads)


def markdown_table(configs: list[Config], results: dict, gemm: dict[str, float]) -> str:
    rows = [
        "| config | measure | NumPy engine | PyTorch twin | NumPy / PyTorch |",
        "|---|---|---:|---:|---:|",
    ]
    for cfg in configs:
        r = results[cfg.name]
        for key, label, fmt in (
            ("step_realistic", "training step, realistic padding: captions/s", "{:.0f}"),
            ("step_full", "training step, no padding (worst case): captions/s", "{:.0f}"),
            ("beam", f"beam-{BEAM} sampling, max_length T: captions/s", "{:.0f}"),
            ("memory_realistic", "training step peak extra RSS, realistic padding: MiB", "{:.1f}"),
            ("memory_full", "training step peak extra RSS, no padding: MiB", "{:.1f}"),
            ("step_gflops", "training step (no padding) GEMM rate: GFLOP/s", "{:.1f}"),
        ):
            numpy_value, torch_value = r[key]["numpy"], r[key]["torch"]
            ratio = numpy_value / torch_value if torch_value else float("nan")
            rows.append(
                f"| {cfg.name} | {label} | {fmt.format(numpy_value)} | {fmt.format(torch_value)} | {ratio:.2f} |"
            )
    rows.append(
        f"| machine | float32 GEMM 2048^3, GFLOP/s | {gemm['numpy']:.0f} | {gemm['torch']:.0f} | "
        f"{gemm['numpy'] / gemm['torch']:.2f} |"
    )
    rows.append("")
    rows.append(
        "NumPy / PyTorch: above 1, NumPy is faster (captions/s, GFLOP/s); for memory, above 1 NumPy needs more "
        "(goal: <= 1.5). The NumPy engine skips the vocabulary projection of padded positions and trims "
        "all-padding columns; the twin, like plain PyTorch code, computes every position."
    )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
