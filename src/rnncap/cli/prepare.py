"""``rnncap prepare``: read a data set, build the vocabulary and extract CNN features into one HDF5 file.

rnncap prepare flickr8k --root DIR [--splits train,dev] --out FILE
rnncap prepare coco --root DIR --year 2014 [--karpathy FILE] --out FILE
rnncap prepare cs231n --root DIR --out FILE
rnncap prepare folder --root DIR [--captions FILE] --out FILE
rnncap prepare flickr8k --root DIR --splits test --vocab flickr8k-lstm --out FILE   (a test set for a model)

Sharded extraction (rnncap.apps.prepare_shards):
rnncap prepare SOURCE ... --shard I/N --out PART             (shard I of N of the photos into a part file)
rnncap prepare merge --out FILE PART...                      (the parts of every shard into the whole file)
torchrun --nproc-per-node N -m rnncap prepare SOURCE ... --out FILE   (both: one shard per process, then merged)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rnncap.cli.args import OUTPUTS_RULE, non_negative, positive, split_list

if TYPE_CHECKING:
    from rnncap.apps.prepare import PrepareResult
    from rnncap.data import Dataset


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap prepare`` and its sources to the command line."""
    prepare = commands.add_parser(
        "prepare",
        help="read a data set, build the vocabulary and extract CNN features into one HDF5 file",
        description="Read a data set, build the vocabulary, encode the captions and extract CNN features into one "
        "HDF5 file that `rnncap train` reads. Running it again continues an interrupted extraction; a --out file that "
        f"holds other data is replaced only with --overwrite. {OUTPUTS_RULE} The extraction can be cut into shards: "
        "--shard I/N writes shard I of N into its own --out, `rnncap prepare merge` joins the parts, and under "
        "`torchrun --nproc-per-node N -m rnncap prepare ...` each process extracts one shard and the first merges "
        "them into --out.",
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
    _add_merge(sources)


def shard_spec(text: str) -> tuple[int, int]:
    """``I/N`` -> (I, N): shard I of N, N >= 1, 0 <= I < N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, shard I of N (e.g. 0/2), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        shards = "N must be at least 1" if count < 1 else f"I must be one of 0..{count - 1}"
        raise argparse.ArgumentTypeError(f"shard {text}: {shards} (the shards of N = 2 are 0/2 and 1/2)")
    return index, count


def _add_merge(sources: argparse._SubParsersAction) -> None:
    """``rnncap prepare merge``: the part files of every shard into the whole prepared file."""
    merge = sources.add_parser(
        "merge",
        help="merge the part files of a sharded extraction (--shard I/N) into one prepared file",
        description="Check that the part files are every shard of one finished extraction (the same data set, "
        "settings, vocabulary and encoder, each shard once, every photo done) and write the prepared file the "
        "unsharded `rnncap prepare` writes.",
    )
    merge.add_argument("parts", nargs="+", type=Path, metavar="PART", help="the part file of every shard")
    merge.add_argument("--out", type=Path, required=True, help="the prepared HDF5 file to write")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    merge.set_defaults(run=_run_prepare_merge)


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
    source.add_argument(
        "--shard",
        type=shard_spec,
        metavar="I/N",
        help="extract only shard I of N of the photos (contiguous blocks) into --out, a part for `rnncap prepare "
        "merge`; resumes like a whole file. Under torchrun each process takes its own shard by itself",
    )


def _run_prepare_photos(args: argparse.Namespace) -> None:
    from rnncap.apps.outputs import check_writable
    from rnncap.apps.prepare import Extraction, prepare_dataset, read_vocabulary
    from rnncap.apps.prepare_shards import prepare_distributed, torchrun_shard
    from rnncap.data import read_coco, read_flickr8k, read_folder

    ranks = torchrun_shard()
    if ranks is not None and args.shard is not None:
        raise ValueError(f"--shard {args.shard[0]}/{args.shard[1]} under torchrun: give --shard or run under torchrun")
    check_writable(args.out, "--out")  # before reading the data set (COCO: a minute); the file's rule is create_store's
    word_to_idx = None if args.vocab is None else read_vocabulary(args.vocab)
    if args.source == "flickr8k":
        dataset = read_flickr8k(args.root, splits=args.splits)
    elif args.source == "coco":
        dataset = read_coco(args.root, year=args.year, karpathy=args.karpathy, splits=args.splits)
    else:
        dataset = read_folder(args.root, args.captions)
    extraction = Extraction(args.encoder, args.backend, args.batch_size, args.workers, args.grid)
    settings = {
        "min_count": args.min_count,
        "max_length": args.max_length,
        "word_to_idx": word_to_idx,
        "overwrite": args.overwrite,
    }
    if ranks is None:
        result = prepare_dataset(dataset, args.out, extraction, shard=args.shard, **settings)
        _print_prepared(result, dataset, args.shard)
        return
    done = prepare_distributed(dataset, args.out, *ranks, extraction, **settings)
    if done.shard is None:
        if done.rank == 0:
            print(f"{args.out} already holds this preparation with every feature of {args.encoder}: nothing to do")
        return
    _print_prepared(done.shard, dataset, (done.rank, done.world), found=done.rank == 0)
    if done.merged is not None:
        print(f"merged the {done.merged.parts} shards in {done.merged.seconds:.0f} s and removed their part files")
        print(f"wrote {done.merged.summary}")


def _print_prepared(result: PrepareResult, dataset: Dataset, shard: tuple[int, int] | None, found: bool = True) -> None:
    """What a preparation found and did; ``found``: also what the data set holds (once per torchrun job)."""
    from rnncap.data.store_create import shard_rows

    if found:
        print(f"found {result.summary}")
        _print_skipped(dataset.skipped)
    if shard is not None:
        start, stop = shard_rows(len(dataset), *shard)
        print(f"shard {shard[0]}/{shard[1]}: photos {start:,}..{stop - 1:,} of the {len(dataset):,}")
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


def _refuse_torchrun(what: str) -> None:
    """Refuse to run ``what`` in several processes, which would all write the same file."""
    from rnncap.apps.prepare_shards import torchrun_shard

    if torchrun_shard() is not None:
        raise ValueError(f"{what} runs in one process: start it without torchrun")


def _run_prepare_merge(args: argparse.Namespace) -> None:
    from rnncap.apps.prepare_shards import merge_prepared

    _refuse_torchrun("rnncap prepare merge")
    result = merge_prepared(args.parts, args.out, overwrite=args.overwrite)
    print(f"merged {result.parts} parts in {result.seconds:.0f} s")
    print(f"wrote {result.summary}")


def _run_prepare_cs231n(args: argparse.Namespace) -> None:
    from rnncap.apps.outputs import check_writable
    from rnncap.apps.prepare import prepare_cs231n

    _refuse_torchrun("rnncap prepare cs231n (its features come with it: there is nothing to extract, nor to shard)")
    check_writable(args.out, "--out")
    summary = prepare_cs231n(args.root, args.out, pca=args.pca, overwrite=args.overwrite)
    print(f"wrote {summary}")
