"""Self-critical training step throughput: the NumPy engine against its PyTorch twins, photos per second.

One SCST step on N photos, as ``rnncap.train.scst.scst_step`` plus the update does it: sample K captions per photo
(multinomial, temperature 1, ``<NULL>``/``<START>``/``<UNK>`` never drawn, max 16 tokens), CIDEr-D rewards against
the photos' references (``rnncap.train.rewards.CiderD``, the same NumPy code for both sides), the leave-one-out
mean baseline, the surrogate loss's backward over the sampled sequences, and Adam. The twin samples with
``torch.multinomial`` in a loop over time under ``torch.no_grad``, then runs ``policy_forward`` (the same
surrogate, tests/test_scst_parity.py) with autograd and ``torch.optim.Adam``.

The models are the shipped ones (``flickr8k-coco-lstm``, ``flickr8k-coco-attention``: real weights, so sampled
captions have realistic lengths and rewards), the photos Flickr8k dev photos from a prepared file (pooled for the
LSTM, the 9 x 9 grid for the attention model), rewarded against their own captions in the model's vocabulary.
Both engines run float32 with the same number of threads; median of the repeats, the engines alternating so that
machine noise hits both::

    python benchmarks/bench_scst.py --data /work/prepared/flickr8k.h5 --photos 50 --samples 5 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from rnncap.apps.joint import encode_references
from rnncap.apps.paths import model_path
from rnncap.data.store import load_grid, load_references, load_split
from rnncap.models import load_model
from rnncap.optim import adam
from rnncap.train import CaptionData
from rnncap.train.config import SCSTConfig
from rnncap.train.rewards import CiderD
from rnncap.train.scst import advantages, scst_step

TESTS = Path(__file__).resolve().parents[1] / "tests"
LEARNING_RATE = 5e-5
MAX_LENGTH = 16


def reference_index(path: str, dev: CaptionData, model) -> CiderD:
    """CiderD over the dev photos' human captions encoded in the model's own vocabulary (a shipped model's
    vocabulary may not be the prepared file's: the joint models read both data sets' words)."""
    references = list(load_references(path, "dev").values())  # the dev photos in the order of their features
    encoded = encode_references(dev.features, references, model.word_to_idx, MAX_LENGTH)
    return CiderD.from_captions(encoded.captions, encoded.image_idxs, len(references), model.vocab_size, model.end_id)


def numpy_step(model, features, photos, index, settings, rng) -> Callable[[], dict[str, float]]:
    configs: dict[str, dict] = {name: {"learning_rate": LEARNING_RATE} for name in model.params}

    def step() -> dict[str, float]:
        _, grads, stats = scst_step(model, features, photos, index, settings, rng)
        for name, dw in grads.items():
            model.params[name], configs[name] = adam(model.params[name], dw, configs[name])
        return {"reward": stats.reward}

    return step


def torch_step(model, features, photos, index, settings, seed: int) -> Callable[[], dict[str, float]]:
    import torch

    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import torch_attention_twin
    import torch_twin

    if model.attends:
        twin = torch_attention_twin.from_numpy_params(model.params, model.alpha_reg, torch.float32)
        forward = torch_attention_twin.policy_forward
    else:
        twin = torch_twin.from_numpy_params(model.params, model.cell_type, torch.float32, model.image_input)
        forward = torch_twin.policy_forward
    opt = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    K = settings.num_samples
    rows = x.repeat_interleave(K, dim=0)

    def step() -> dict[str, float]:
        ids = _torch_sample(twin, rows, model.attends, generator)  # (N*K, T)
        rewards = index.scores(ids.numpy(), np.repeat(photos, K))
        advantage, _ = advantages(rewards, K, settings.baseline)
        captions = torch.cat([torch.full((ids.shape[0], 1), model.start_id, dtype=torch.int64), ids], dim=1)
        opt.zero_grad(set_to_none=True)
        loss = forward(twin, rows, captions, torch.from_numpy(advantage.astype(np.float32)))
        loss.backward()
        opt.step()
        return {"reward": float(rewards.mean())}

    return step


def _torch_sample(twin, rows, attends: bool, generator):
    """(M, MAX_LENGTH) int64 sampled ids from the twin, as rnncap.sampling.sample_captions draws them."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    from torch_twin import END_ID, NULL_ID, START_ID, UNK_ID

    M = rows.shape[0]
    with torch.no_grad():
        if attends:
            h, c, proj = twin.init_state(rows)
        else:
            state = twin.init_state(rows)
        words = torch.full((M,), START_ID, dtype=torch.int64)
        ids = torch.full((M, MAX_LENGTH), NULL_ID, dtype=torch.int64)
        finished = torch.zeros(M, dtype=torch.bool)
        for t in range(MAX_LENGTH):
            if attends:
                _, h, c = twin.attend_and_step(rows, proj, twin.embed(words), h, c)
                scores = twin.vocab(h)
            else:
                log_probs, state = twin.step(state, words)
                scores = log_probs
            scores[:, [NULL_ID, START_ID, UNK_ID]] = -torch.inf
            words = torch.multinomial(F.softmax(scores, dim=1), 1, generator=generator)[:, 0]
            ids[:, t] = torch.where(finished, NULL_ID, words)
            finished |= words == END_ID
            if bool(finished.all()):
                break
    return ids


def measure(steps: dict[str, Callable[[], dict[str, float]]], repeats: int, photos: int) -> dict[str, dict]:
    """Median photos/s of each step, alternating engines, after one warm-up round each."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    rewards: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            rewards[name].append(steps[name]()["reward"])
            times[name].append(time.perf_counter() - start)
    return {
        name: {"photos_per_s": photos / statistics.median(t), "reward": float(np.mean(rewards[name]))}
        for name, t in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/work/prepared/flickr8k.h5", help="a prepared file with a dev split")
    parser.add_argument("--photos", type=int, default=50, help="photos per step (N)")
    parser.add_argument("--samples", type=int, default=5, help="captions drawn per photo (K)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default="flickr8k-coco-lstm,flickr8k-coco-attention")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    dev = load_split(args.data, "dev")
    photos = np.arange(args.photos)
    settings = SCSTConfig(num_samples=args.samples, baseline="mean", max_length=MAX_LENGTH)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.threads} thread(s) per engine")
    print("| model | N x K | NumPy photos/s | PyTorch photos/s | NumPy / PyTorch |\n|---|---|---:|---:|---:|")
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for name in args.models.split(","):
            model = load_model(model_path(name))
            index = reference_index(args.data, dev, model)
            features = load_grid(args.data, "dev")[: args.photos] if model.attends else dev.features[: args.photos]
            features = features.astype(np.float32)
            steps = {
                "numpy": numpy_step(model, features, photos, index, settings, np.random.default_rng(0)),
                "torch": torch_step(load_model(model_path(name)), features, photos, index, settings, 0),
            }
            result = measure(steps, args.repeats, args.photos)
            ours, theirs = result["numpy"]["photos_per_s"], result["torch"]["photos_per_s"]
            print(f"| {name} | {args.photos} x {args.samples} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")
            print(
                f"  (mean sample reward: numpy {result['numpy']['reward']:.3f}, torch {result['torch']['reward']:.3f})"
            )


if __name__ == "__main__":
    main()
