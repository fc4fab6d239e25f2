"""``rnncap evaluate``: caption a split of a prepared file, print its scores and caption habits, write JSON and HTML.

rnncap evaluate --model MODEL --data FILE [--split dev] [--beam 3] [--out DIR | --json FILE --html FILE] [--no-save]
                [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rnncap.cli.args import (
    OUTPUTS_RULE,
    add_device_option,
    add_model_option,
    add_overwrite_option,
    non_negative,
    positive,
)
from rnncap.metrics import METRICS, TOKENIZERS, format_scores

if TYPE_CHECKING:
    from rnncap.apps.evaluation import EvaluationResult

DEFAULT_OUT = Path("runs/evaluate")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap evaluate`` to the command line."""
    evaluate = commands.add_parser(
        "evaluate",
        help="caption a split of a prepared file and score the captions against the human ones",
        description="Caption every photo of a split of a prepared file (`rnncap prepare`) and score the captions "
        "against the split's human captions as the COCO caption evaluation does. Prints the scores on the 0-100 "
        "scale and the captions' habits, and writes the scores on pycocoevalcap's 0-1 scale with every caption as "
        "JSON and a gallery that opens offline as HTML (with attention maps for an attention model): by default "
        f"OUT/<model>-<split>.json and .html. {OUTPUTS_RULE}",
    )
    add_model_option(evaluate)
    evaluate.add_argument(
        "--data", metavar="FILE", type=Path, required=True, help="the prepared HDF5 file (`rnncap prepare`)"
    )
    evaluate.add_argument(
        "--split", metavar="NAME", default="dev", help="the split to caption and score (default: dev)"
    )
    _add_decoding_and_scoring(evaluate)
    add_device_option(evaluate, "the decoding")
    _add_outputs(evaluate)
    evaluate.set_defaults(run=_run_evaluate)


def _add_decoding_and_scoring(evaluate: argparse.ArgumentParser) -> None:
    """How the captions are searched and scored: the options of :func:`rnncap.apps.evaluation.evaluate_model`."""
    evaluate.add_argument(
        "--beam", metavar="N", type=positive, default=3, help="beam size; 1 is greedy search (default 3)"
    )
    evaluate.add_argument(
        "--length-penalty",
        metavar="ALPHA",
        type=float,
        default=0.0,
        help="beam ranks by log-probability / length ** this: 0 (default) total, 1 mean per word",
    )
    evaluate.add_argument(
        "--max-length",
        metavar="N",
        type=positive,
        help="most tokens per caption, <END> included (default: the model's own, else the file's caption length + 1)",
    )
    evaluate.add_argument(
        "--metrics",
        metavar="LIST",
        type=_metric_list,
        default=METRICS,
        help=f"comma-separated metrics (default: {','.join(METRICS)}); METEOR needs Java and is skipped without it",
    )
    evaluate.add_argument(
        "--tokenizer",
        choices=TOKENIZERS,
        default="rnncap",
        help="how captions are split into words before scoring: rnncap (default, no Java) or ptb (Java)",
    )
    evaluate.add_argument(
        "--batch-size", metavar="N", type=positive, default=256, help="photos decoded at once (default 256)"
    )


def _add_outputs(evaluate: argparse.ArgumentParser) -> None:
    """Which files are written: the JSON of scores and captions, the HTML gallery."""
    evaluate.add_argument(
        "--out", metavar="DIR", type=Path, default=DEFAULT_OUT, help=f"where the files go (default: {DEFAULT_OUT})"
    )
    evaluate.add_argument(
        "--json", metavar="FILE", type=Path, help="the scores (0-1 scale), settings and captions (default: in --out)"
    )
    evaluate.add_argument(
        "--html", metavar="FILE", type=Path, help="the gallery of photos, captions and scores (default: in --out)"
    )
    evaluate.add_argument("--no-save", dest="save", action="store_false", help="print the scores, write no files")
    add_overwrite_option(evaluate, "existing --json and --html files")
    evaluate.add_argument(
        "--gallery-size",
        metavar="N",
        type=non_negative,
        default=100,
        help="photos in the --html gallery, the first of the split; 0: all (default 100)",
    )
    evaluate.add_argument(
        "--attention-maps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="for an attention model, show under each photo of the --html gallery where the model looked for each "
        "word (default: on)",
    )


def _metric_list(text: str) -> tuple[str, ...]:
    """``bleu,CIDEr`` -> ``("BLEU", "CIDEr")``: names as METRICS spells them, any case."""
    known = {name.lower(): name for name in METRICS}
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name.lower() not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown metric(s) {unknown}: choose from {','.join(METRICS)}")
    return tuple(known[name.lower()] for name in names)


def _run_evaluate(args: argparse.Namespace) -> None:
    from rnncap.apps.evaluation import evaluate_model
    from rnncap.apps.outputs import check_outputs
    from rnncap.apps.paths import model_path

    path = model_path(args.model)
    if args.save:
        name = f"{path.stem}-{args.split}"
        args.json = args.json or args.out / f"{name}.json"
        args.html = args.html or args.out / f"{name}.html"
    else:
        args.json = args.html = None
    # Before the captioning, which takes minutes on a large split: a bad output costs a one-line error, not the run.
    check_outputs({"--json": args.json, "--html": args.html}, overwrite=args.overwrite, inputs=(path, args.data))

    # A warning (e.g. a model that does not name its encoder) as one line, like the errors, not with a source line.
    with warnings.catch_warnings(record=True) as caught:
        result = evaluate_model(
            path,
            args.data,
            split=args.split,
            beam_size=args.beam,
            max_length=args.max_length,
            length_penalty=args.length_penalty,
            metrics=args.metrics,
            tokenizer=args.tokenizer,
            batch_size=args.batch_size,
            # Weights only for the gallery's photos (--gallery-size 0: all of them).
            attention_maps=(args.gallery_size or None) if args.html and args.attention_maps else 0,
            device=args.device,
        )
    for warning in caught:
        print(f"rnncap evaluate: warning: {warning.message}", file=sys.stderr)
    _print_report(result)
    if args.json or args.html:
        print()
    if args.json:
        print(f"wrote {result.write_json(args.json)} (scores on the 0-1 scale)")
    if args.html:
        size = args.gallery_size or None  # 0: every photo
        gallery = result.write_gallery(args.html, size=size)
        maps = ", with attention maps" if result.attention else ""
        print(f"wrote {gallery} ({len(result.image_ids[:size]):,} photos{maps})")


def _print_report(result: EvaluationResult) -> None:
    """What was evaluated, how fast, the scores on the 0-100 scale and the captions' habits."""
    from rnncap.apps.evaluation import describe_stats

    _print_rows(result.details())
    print(
        f"captioned {len(result.image_ids):,} photos in {result.decode_seconds:.1f} s "
        f"({result.photos_per_second:.0f} photos/s), scored in {result.score_seconds:.1f} s"
    )
    print("\nScores on the 0-100 scale (pycocoevalcap's 0-1 values x 100, CIDEr too):\n")
    print(format_scores(result.scores))
    print("\nCaption habits:")
    _print_rows(describe_stats(result.stats), indent="  ")


def _print_rows(rows: Mapping[str, str], indent: str = "") -> None:
    """Label -> text, one a line, the texts lined up."""
    width = max(map(len, rows))
    for label, text in rows.items():
        print(f"{indent}{label:<{width}}  {text}")
