"""Latency of captioning one photo file, end to end, once the model and the encoder are loaded.

What a user of ``Captioner.caption(path)`` waits for, split into its three stages (timed one after the other in
each run), and the whole call timed on its own:

- decode + preprocess: read the JPEG, crop and resize it to the encoder's input (``load_image``);
- encode: the encoder's pooled features of that one photo (ONNX Runtime);
- caption decode: beam search (beam 3) and ids -> words.

Median over ``--runs`` runs after ``--warmup`` runs, on all cores.

    python benchmarks/bench_caption.py                                  # shipped model, scikit-image's cat
    python benchmarks/bench_caption.py --model my-model.npz --photo dog.jpg --runs 50

Without the shipped model (and no ``--model``), a random-weight LSTM of the shipped model's size is timed
instead: W = H = 512, V = 2541, D = 1280, reading efficientnet-lite2 features. Random weights rarely end a
caption, so its beam search runs every one of the ``max_length`` steps: a pessimistic decode time.
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

from rnncap import Captioner, CaptioningRNN, ModelFileError
from rnncap.encoders import load_image
from rnncap.vocab import END, NULL, START, UNK

T = TypeVar("T")
SHIPPED_SIZE = {"vocab_size": 2541, "input_dim": 1280, "wordvec_dim": 512, "hidden_dim": 512, "cell_type": "lstm"}


def repeat(fn: Callable[[], T], runs: int, warmup: int) -> list[T]:
    """``fn()``'s results of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(runs)]


def random_shipped_size_captioner() -> Captioner:
    size = dict(SHIPPED_SIZE)
    words = [NULL, START, END, UNK] + [f"w{i}" for i in range(size.pop("vocab_size") - 4)]
    model = CaptioningRNN({word: idx for idx, word in enumerate(words)}, **size, rng=0)
    model.metadata = {"encoder": "efficientnet-lite2"}
    return Captioner(model)


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
        described = f"model {args.model or 'shipped'}"
    except ModelFileError as err:
        if args.model is not None:
            sys.exit(f"bench_caption: {err}")
        captioner = random_shipped_size_captioner()
        described = (
            "RANDOM-WEIGHT LSTM of the shipped model's size (W=H=512, V=2541; the shipped model is missing): "
            f"its captions rarely end, so the decode runs up to all {captioner.max_length} steps"
        )
    model, encoder = captioner.model, captioner.encoder  # loads the encoder: not timed

    with tempfile.TemporaryDirectory() as directory:
        photo = args.photo or sample_photo(directory)
        size, crop = encoder.image_size, encoder.spec.crop_fraction

        def stages() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            square = load_image(photo, size, crop)
            t1 = time.perf_counter()
            pooled, _ = encoder.encode_preprocessed(square[None], with_grid=False)
            t2 = time.perf_counter()
            captioner.caption_features(pooled, beam_size=args.beam)
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
        f"{model.cell_type} W={model.wordvec_dim} H={model.hidden_dim} V={model.vocab_size}, beam {args.beam}, "
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
