"""Latency of captioning one photo file, end to end, once the model and the encoder are loaded.

What a user of ``Captioner.caption(path)`` waits for, split into its three stages (timed one after the other in
each run), and the whole call timed on its own:

- decode + preprocess: read the JPEG, crop and resize it to the encoder's input (``load_image``);
- encode: the encoder's features of that one photo (ONNX Runtime): pooled, or the grid for an attention model;
- caption decode: beam search (beam 3) and ids -> words.

Median over ``--runs`` runs after ``--warmup`` runs, on all cores.

    python benchmarks/bench_caption.py                                  # default shipped model, scikit-image's cat
    python benchmarks/bench_caption.py --model flickr8k-lstm            # the other shipped model
    python benchmarks/bench_caption.py --model my-model.npz --photo dog.jpg --runs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rnncap import Captioner, ModelFileError
from rnncap.encoders import load_image

T = TypeVar("T")


def repeat(fn: Callable[[], T], runs: int, warmup: int) -> list[T]:
    """``fn()``'s results of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(runs)]


def sample_photo(directory: str) -> Path:
    """scikit-image's cat photo (chelsea, 451 x 300) as a JPEG file."""
    from PIL import Image
    from skimage import data

    path = Path(directory) / "chelsea.jpg"
    Image.fromarray(data.chelsea()).save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model name or file (default: the shipped model)")
    parser.add_argument("--photo", type=Path, help="a photo file (default: scikit-image's chelsea as a JPEG)")
    parser.add_argument("--beam", type=int, default=3)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    try:
        captioner = Captioner.from_pretrained(args.model)
    except ModelFileError as err:
        sys.exit(f"bench_caption: {err}")
    described = f"model {args.model or 'shipped (default)'}"
    model, encoder = captioner.model, captioner.encoder  # loads the encoder: not timed
    reads_grid = hasattr(model, "feature_shape")  # an attention model reads the grid, the others pooled features

    with tempfile.TemporaryDirectory() as directory:
        photo = args.photo or sample_photo(directory)
        size, crop = encoder.image_size, encoder.spec.crop_fraction

        def stages() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            square = load_image(photo, size, crop)
            t1 = time.perf_counter()
            pooled, grid = encoder.encode_preprocessed(square[None], with_grid=reads_grid)
            t2 = time.perf_counter()
            captioner.caption_features(grid if reads_grid else pooled, beam_size=args.beam)
            return t1 - t0, t2 - t1, time.perf_counter() - t2

        def end_to_end() -> float:
            start = time.perf_counter()
            captioner.caption(photo, beam_size=args.beam)
            return time.perf_counter() - start

        per_stage = zip(*repeat(stages, args.runs, args.warmup), strict=True)
        decode, encode, search = (1000 * statistics.median(times) for times in per_stage)
        total = 1000 * statistics.median(repeat(end_to_end, args.runs, args.warmup))
        text = captioner.caption(photo, beam_size=args.beam)
        photo_name = photo if args.photo else "scikit-image chelsea (451 x 300, JPEG quality 90)"

    print(f"{described}; encoder {encoder.name} ({encoder.backend}, {size} px)")
    print(f"photo {photo_name}: {text!r}")
    print(
        f"{type(model).__name__} W={model.wordvec_dim} H={model.hidden_dim} V={model.vocab_size}, beam {args.beam}, "
        f"median of {args.runs} runs after {args.warmup} warm-up, {os.cpu_count()} cores"
    )
    print()
    print("| stage | ms |")
    print("|---|---:|")
    print(f"| decode + preprocess (JPEG -> {size}x{size}) | {decode:.1f} |")
    print(f"| encode ({encoder.name}) | {encode:.1f} |")
    print(f"| caption decode (beam {args.beam} + words) | {search:.1f} |")
    print(f"| sum of the stages | {decode + encode + search:.1f} |")
    print(f"| **Captioner.caption(path), end to end** | **{total:.1f}** |")


if __name__ == "__main__":  # rnncap's decode workers are spawned processes, which re-import the main module
    main()
