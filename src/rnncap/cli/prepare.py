"""``rnncap prepare``: read a data set, build the vocabulary and extract CNN features into one HDF5 file.

rnncap prepare flickr8k --root DIR [--splits train,dev] --out FILE
rnncap prepare coco --root DIR --year 2014 [--karpathy FILE] --out FILE
rnncap prepare cs231n --root DIR --out FILE
rnncap prepare folder --root DIR [--captions FILE] --out FILE
rnncap prepare flickr8k --root DIR --splits test --vocab flickr8k-lstm --out FILE   (a test set for a model)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnncap.cli.args import OUTPUTS_RULE, non_negative, positive, split_list


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap prepare`` and its sources to the command line."""
    prepare = commands.add_parser(
        "prepare",
        help="read a data set, build the vocabulary and extract CNN features into one HDF5 file",
        description="Read a data set, build the vocabulary, encode the captions and extract CNN features into one "
        "HDF5 file that `rnncap train` reads. Running it again continues an interrupted extraction; a --out file that "
        f"holds other data is replaced only with --overwrite. {OUTPUTS_RULE}",
    )
    sources = prepare.add_subparsers(dest="source", required=True)
    photo_sources = _add_photo_sources(sources)
    cs231n = sources.add_parser("cs231n", help="CS231n's coco_captioning folder (features included, no photos)")
    cs231n.add_argument(
        "--no-pca", dest="pca", action="store_false", help="use the 4096-d fc7 features instead of the 512-d PCA ones"
    )
    cs231n.set_defaults(run=_run_prepare_cs231n)
    for source in (*photo_sources, cs231n):
        _add_file_options(source)
    for source in photo_sources:
        _add_extraction_options(source)
        source.set_defaults(run=_run_prepare_photos)


def _add_photo_sources(sources: argparse._SubParsersAction) -> tuple[argparse.ArgumentParser, ...]:
    """The data sets of photos, each with the options of its reader (rnncap.data.read_flickr8k, ...)."""
    flickr = sources.add_parser("flickr8k", help="Flickr8k: Flickr8k.token.txt, Flickr_8k.*Images.txt, Images/")
    flickr.add_argument(
        "--splits",
        type=split_list,
        default=("train", "dev", "test"),
        help="comma-separated splits to prepare (default: train,dev,test)",
    )
    coco = sources.add_parser("coco", help="COCO: annotations/captions_{train,val}YEAR.json and the photo folders")
    coco.add_argument("--year", type=int, default=2014, help="2014 (default) or 2017")
    coco.add_argument("--karpathy", type=Path, help="Karpathy's dataset_coco.json for the 113k/5k/5k split")
    coco.add_argument("--splits", type=split_list, help="comma-separated splits to prepare (default: all)")
    folder = sources.add_parser("folder", help="your own photos: a folder and a CSV or JSON lines captions file")
    folder.add_argument(
        "--captions",
        type=Path,
        help="CSV (image,caption[,split]) or JSON lines file; default: captions.csv/.jsonl in --root",
    )
    return flickr, coco, folder


def _add_file_options(source: argparse.ArgumentParser) -> None:
    """Where the data set is and the prepared file goes: every source has them."""
    source.add_argument("--root", type=Path, required=True, help="the data set folder")
    source.add_argument("--out", type=Path, required=True, help="the prepared HDF5 file to write or continue")
    source.add_argument(
        "--overwrite", action="store_true", help="replace a file holding other data (its features are lost)"
    )


def _add_extraction_options(source: argparse.ArgumentParser) -> None:
    """How captions are encoded and photos turned into features: :func:`rnncap.apps.prepare.prepare_dataset`."""
    source.add_argument(
        "--encoder",
        default="efficientnet-lite2",
        help="efficientnet-lite2 (default), efficientnet-lite0, resnet50/101/152 (torchvision)",
    )
    source.add_argument(
        "--backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="how the encoder runs (default: ONNX Runtime when available)",
    )
    source.add_argument("--batch-size", type=positive, default=32, help="photos per inference (default 32)")
    source.add_argument("--workers", type=non_negative, default=2, help="photo-decoding processes (default 2)")
    source.add_argument(
        "--min-count",
        type=positive,
        default=5,
        help="words seen fewer times in the train split become <UNK> (default 5)",
    )
    source.add_argument("--max-length", type=positive, default=16, help="words kept per caption (default 16)")
    source.add_argument(
        "--vocab",
        metavar="MODEL_OR_VOCAB",
        help="encode the captions with this vocabulary instead of building one from the train split: a shipped "
        "model's name (flickr8k-attention), a model .npz or a vocabulary JSON (word_to_idx, or CS231n's); "
        "prepares a test set for an existing model, no train split needed",
    )
    source.add_argument(
        "--no-grid",
        dest="grid",
        action="store_false",
        help="skip the spatial grid features (attention models need them)",
    )


def _run_prepare_photos(args: argparse.Namespace) -> None:
    from rnncap.apps.outputs import check_writable
    from rnncap.apps.prepare import prepare_dataset, read_vocabulary
    from rnncap.data import read_coco, read_flickr8k, read_folder

    check_writable(args.out, "--out")  # before reading the data set (COCO: a minute); the file's rule is create_store's
    word_to_idx = None if args.vocab is None else read_vocabulary(args.vocab)
    if args.source == "flickr8k":
        dataset = read_flickr8k(args.root, splits=args.splits)
    elif args.source == "coco":
        dataset = read_coco(args.root, year=args.year, karpathy=args.karpathy, splits=args.splits)
    else:
        dataset = read_folder(args.root, args.captions)
    result = prepare_dataset(
        dataset,
        args.out,
        min_count=args.min_count,
        max_length=args.max_length,
        encoder=args.encoder,
        backend=args.backend,
        batch_size=args.batch_size,
        workers=args.workers,
        grid=args.grid,
        overwrite=args.overwrite,
        word_to_idx=word_to_idx,
    )
    print(f"found {result.summary}")
    _print_skipped(dataset.skipped)
    if not result.created:
        print(f"{result.path} already held this data: continued its feature extraction")
    print(f"encoded {result.encoded:,} photos in {result.seconds:.0f} s ({result.images_per_second:.1f} photos/s)")
    for image_id, reason in result.failed:
        print(f"skipped unreadable photo {image_id}: {reason}")
    print(f"wrote {result.path}")


def _print_skipped(skipped: tuple[str, ...], shown: int = 5) -> None:
    """The reader's skipped entries (missing photos, photos without captions): the count and the first few."""
    if not skipped:
        return
    more = f" (first {shown} shown)" if len(skipped) > shown else ""
    print(f"skipped {len(skipped):,} entries of the data set{more}:")
    for line in skipped[:shown]:
        print(f"  {line}")


def _run_prepare_cs231n(args: argparse.Namespace) -> None:
    from rnncap.apps.outputs import check_writable
    from rnncap.apps.prepare import prepare_cs231n

    check_writable(args.out, "--out")
    summary = prepare_cs231n(args.root, args.out, pca=args.pca, overwrite=args.overwrite)
    print(f"wrote {summary}")
