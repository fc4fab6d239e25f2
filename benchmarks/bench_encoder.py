"""Feature extraction speed: the shipped path (ONNX Runtime) against plain torch eager, in one run.

Measured on real Flickr8k photos (``../shared/data/flickr8k/Images`` beside the repository, or ``--images-dir``),
images per second for:

- decode only: JPEG decode + crop + resize to the encoder's input, in one process and in the worker pool;
- eager baseline: the same network in plain torch, as one would write it (``model.eval()``, ``torch.no_grad()``,
  float32 NCHW input normalised beforehand, outside the timing), on pre-decoded photos;
- rnncap's torch backend (channels-last, inference mode) and its ONNX Runtime backend, on pre-decoded photos;
- the full pipeline: ``extract_features`` (decode workers overlapped with ONNX Runtime), from the files.

Same batch size and thread count for every engine; the engines alternate over the repeats, and the median is
reported. Also the largest absolute difference between the ONNX Runtime and the eager outputs.

    python benchmarks/bench_encoder.py                       # 256 photos, efficientnet-lite2, batch 32
    python benchmarks/bench_encoder.py --encoder efficientnet-lite0 --images 128 --workers 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from rnncap.encoders import extract_features, load_encoder, load_image
from rnncap.encoders.preprocess import load_images
from rnncap.encoders.specs import get_spec

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "flickr8k" / "Images"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rate(count: int, seconds: list[float]) -> float:
    return count / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-dir", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--images", type=int, default=256, help="photos to use (the first, by name)")
    parser.add_argument("--encoder", default="efficientnet-lite2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="inference threads for every engine")
    parser.add_argument("--workers", type=int, default=2, help="decode processes of the full pipeline")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    paths = sorted(args.images_dir.glob("*.jpg"))[: args.images]
    if not paths:
        print(f"no photos in {args.images_dir}: nothing to measure (pass --images-dir)")
        return
    n, bs, threads = len(paths), args.batch_size, args.threads
    spec = get_spec(args.encoder)

    # Imported here, not at the top: the spawned decode workers import this file, and should not pay for torch.
    import onnxruntime
    import torch

    from rnncap.encoders.torch_models import build_feature_net

    torch.set_num_threads(threads)
    onnx = load_encoder(args.encoder, "onnx", num_threads=threads)  # exports on first use (not timed)
    torch_backend = load_encoder(args.encoder, "torch", num_threads=threads)
    eager = build_feature_net(spec)  # plain torch: default memory format, no_grad

    print(f"# {args.encoder}: {n} Flickr8k photos, batch {bs}, {threads} inference threads, {args.workers} workers")
    print(
        f"{cpu_name()}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}\n"
    )

    # ---- decode only -----------------------------------------------------------------------------------------
    size, crop = spec.image_size, spec.crop_fraction
    decode_1: list[float] = []
    decode_pool: list[float] = []
    tasks = [(i, str(p)) for i, p in enumerate(paths)]
    chunk = max(1, bs // (2 * args.workers))
    parts = [tasks[k : k + chunk] for k in range(0, n, chunk)]
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        list(pool.map(load_images, parts[: args.workers], [size] * args.workers, [crop] * args.workers))  # start
        for _ in range(args.repeats):
            start = time.perf_counter()
            squares = [load_image(p, size, crop) for p in paths]
            decode_1.append(time.perf_counter() - start)
            start = time.perf_counter()
            list(pool.map(load_images, parts, [size] * len(parts), [crop] * len(parts)))
            decode_pool.append(time.perf_counter() - start)
    batches = [np.stack(squares[k : k + bs]) for k in range(0, n, bs)]  # (B, S, S, 3) uint8

    # ---- inference on pre-decoded photos ---------------------------------------------------------------------
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    nchw = [((torch.from_numpy(b).permute(0, 3, 1, 2).float() - mean) / std).contiguous() for b in batches]

    def eager_batch(k: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            features = eager.trunk(nchw[k])  # (B, C, h, w)
            return features.mean(dim=(2, 3)).numpy(), features.flatten(2).transpose(1, 2).numpy()

    engines: dict[str, Callable[[int], tuple]] = {
        "eager": eager_batch,
        "torch": lambda k: torch_backend.encode_preprocessed(batches[k]),
        "onnx": lambda k: onnx.encode_preprocessed(batches[k]),
    }
    for engine in engines.values():
        engine(0)  # warm-up: first-call allocations and kernel selection
    diff_pooled = diff_grid = 0.0
    for k in range(len(batches)):
        (want_pooled, want_grid), (got_pooled, got_grid) = eager_batch(k), onnx.encode_preprocessed(batches[k])
        diff_pooled = max(diff_pooled, float(np.abs(got_pooled - want_pooled).max()))
        diff_grid = max(diff_grid, float(np.abs(got_grid - want_grid).max()))
    times: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(args.repeats):
        order = list(engines) if r % 2 == 0 else list(reversed(engines))  # alternate, so drift hits all alike
        for name in order:
            start = time.perf_counter()
            for k in range(len(batches)):
                engines[name](k)
            times[name].append(time.perf_counter() - start)

    # ---- full pipeline: files -> features --------------------------------------------------------------------
    pipeline: list[float] = []
    for _ in range(args.repeats):
        report = extract_features(onnx, paths, lambda *_: None, batch_size=bs, workers=args.workers, progress=False)
        assert report.encoded == n, report.failed
        pipeline.append(report.seconds)

    base = rate(n, times["eager"])
    rows = [
        ("decode + crop + resize, 1 process", rate(n, decode_1)),
        (f"decode + crop + resize, {args.workers} worker processes", rate(n, decode_pool)),
        ("**eager torch baseline** (NCHW, no_grad), pre-decoded", base),
        ("rnncap torch backend (channels-last, inference_mode), pre-decoded", rate(n, times["torch"])),
        ("**rnncap ONNX Runtime backend**, pre-decoded", rate(n, times["onnx"])),
        (f"**full pipeline**: extract_features, {args.workers} decode workers + ONNX Runtime", rate(n, pipeline)),
    ]
    print("| measure | images/s | / eager |")
    print("|---|---:|---:|")
    for label, value in rows:
        print(f"| {label} | {value:.1f} | {value / base:.2f}x |")
    print(f"\nmax |ONNX Runtime - eager|: pooled {diff_pooled:.1e}, grid {diff_grid:.1e} (features up to 6)")
    print(f"median of {args.repeats} repeats; ONNX export cached in {onnx_cache_hint()}")


def onnx_cache_hint() -> str:
    from rnncap.encoders.onnx_backend import cache_root

    return str(cache_root() / "encoders")


if __name__ == "__main__":  # the decode workers are spawned: they import this file without running it
    sys.exit(main())
