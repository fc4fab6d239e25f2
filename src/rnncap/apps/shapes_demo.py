"""Training in seconds: make small pictures with known captions, train an LSTM captioner, caption new ones.

Run it with ``make demo-shapes`` or ``python -m rnncap.apps.shapes_demo``. It needs no dataset and no pretrained
network, so it runs anywhere, in seconds on two cores: each picture is one shape (square, circle or cross) in one
of five colours, big or small, in one of four places, on a noisy background, and its caption says all four ("a
small red circle at the top"). The pixels themselves stand in for CNN features. The captioner must learn to read
shape, colour, size and place from the pixels and to write them in order; the demo prints captions of pictures it
never saw and how many are exactly right.

It shows the whole engine at work (data, vocabulary, Trainer, greedy and beam decoding) where the answer is known;
``make demo`` captions real photos with the shipped model instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rnncap.models import CaptioningRNN
from rnncap.text import build_vocab, decode_captions, encode, tokenize
from rnncap.train import CaptionData, TrainConfig, Trainer

SIZE = 25  # pictures are SIZE x SIZE RGB; odd, so that every shape sits centred on a pixel
COLOURS = {
    "red": (1.0, 0.1, 0.1),
    "green": (0.1, 0.9, 0.1),
    "blue": (0.2, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1),
    "white": (1.0, 1.0, 1.0),
}
SHAPES = ("square", "circle", "cross")
PLACES = {"at the top": (7, 12), "at the bottom": (17, 12), "on the left": (12, 7), "on the right": (12, 17)}  # pixels
SIZES = {"small": 3.5, "big": 6.5}  # half-widths in pixels; half-integers draw round discs without spikes


def shape_mask(shape: str, centre: tuple[int, int], radius: float) -> np.ndarray:
    """(SIZE, SIZE) booleans: the pixels covered by ``shape`` centred at pixel ``centre``, ``radius`` pixels wide."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    dy, dx = rows - centre[0], cols - centre[1]
    if shape == "square":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if shape == "circle":
        return dy**2 + dx**2 <= radius**2
    arm = radius / 2.6  # a plus sign: two bars, 3 pixels wide when small, 5 when big
    return ((np.abs(dy) <= arm) & (np.abs(dx) <= radius)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= radius))


def make_pictures(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """``n`` random pictures (n, SIZE, SIZE, 3) float32 in [0, 1] and their captions."""
    pictures = rng.uniform(0.0, 0.25, size=(n, SIZE, SIZE, 3)).astype(np.float32)  # noisy dark background
    captions = []
    for picture in pictures:  # building a small dataset once, not a training hot path
        colour = rng.choice(list(COLOURS))
        shape = rng.choice(SHAPES)
        place = rng.choice(list(PLACES))
        size = rng.choice(list(SIZES))
        picture[shape_mask(shape, PLACES[place], SIZES[size])] = COLOURS[colour]
        captions.append(f"a {size} {colour} {shape} {place}")
    return pictures, captions


def save_gallery(pictures: np.ndarray, truths: list[str], guesses: list[str], path: Path) -> None:
    """A PNG grid of pictures titled with the generated caption (green when exactly right, red otherwise)."""
    from matplotlib.figure import Figure  # imported here: only the demo draws

    count = len(pictures)
    columns = 4
    rows = -(-count // columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows))
    for i, (picture, truth, guess) in enumerate(zip(pictures, truths, guesses, strict=True)):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.imshow(picture, interpolation="nearest")
        axes.set_title(
            guess.replace(" at ", "\nat ").replace(" on ", "\non "),
            fontsize=9,
            color="green" if guess == truth else "red",
        )
        axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the demo; returns the share of unseen pictures captioned exactly right, by decoding method."""
    parser = argparse.ArgumentParser(prog="python -m rnncap.apps.shapes_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shapes-demo"), help="where checkpoints and pictures go")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    train_pictures, train_captions = make_pictures(args.train_size, rng)
    val_pictures, val_captions = make_pictures(500, rng)
    tokenized = {
        split: [tokenize(c) for c in captions] for split, captions in (("train", train_captions), ("val", val_captions))
    }
    word_to_idx = build_vocab(tokenized["train"], min_count=1)
    max_words = max(len(t) for t in tokenized["train"])
    features = {split: p.reshape(len(p), -1) - 0.3 for split, p in (("train", train_pictures), ("val", val_pictures))}
    train = CaptionData(
        features["train"], encode(tokenized["train"], word_to_idx, max_words), np.arange(len(train_captions))
    )
    val = CaptionData(features["val"], encode(tokenized["val"], word_to_idx, max_words), np.arange(len(val_captions)))
    print(
        f"{len(train_captions)} training and {len(val_captions)} validation pictures of {SIZE}x{SIZE} pixels, "
        f"vocabulary of {len(word_to_idx)} tokens; e.g. '{train_captions[0]}'"
    )

    model = CaptioningRNN(
        word_to_idx, input_dim=train.features.shape[1], wordvec_dim=64, hidden_dim=128, cell_type="lstm", rng=args.seed
    )
    config = TrainConfig(
        num_epochs=args.epochs,
        batch_size=50,
        optim_config={"learning_rate": 5e-3},
        lr_decay=0.9,
        patience=None,  # every epoch: the demo shows how far a fixed number of them gets
        seed=args.seed,
    )
    started = time.perf_counter()
    history = Trainer(model, train, val, config, out_dir=args.out).train()
    print(
        f"trained {args.epochs} epochs in {time.perf_counter() - started:.0f} s; "
        f"validation loss {history['val_loss'][0]:.2f} -> {min(history['val_loss']):.2f}"
    )

    max_length = train.captions.shape[1]
    greedy = decode_captions(model.sample(val.features, max_length), model.idx_to_word)
    beam = decode_captions(model.beam_search(val.features, beam_size=3, max_length=max_length), model.idx_to_word)
    for truth, guess in list(zip(val_captions, beam, strict=True))[:8]:
        print(f"  {'ok ' if guess == truth else 'BAD'}  {guess:36s} (truth: {truth})")
    accuracy = {}
    for name, guesses in (("greedy", greedy), ("beam 3", beam)):
        accuracy[name] = float(np.mean([g == t for g, t in zip(guesses, val_captions, strict=True)]))
        print(f"{name}: {100 * accuracy[name]:.1f}% of {len(val_captions)} unseen pictures captioned exactly right")
    gallery = args.out / "samples.png"
    save_gallery(val_pictures[:12], val_captions[:12], beam[:12], gallery)
    print(f"model: {args.out / 'best.npz'}; captioned pictures: {gallery}")
    return accuracy


if __name__ == "__main__":
    main()
