"""``rnncap serve``: a web page and a JSON API that caption photos, on this machine by default.

rnncap serve [--model NAME_OR_PATH] [--host 127.0.0.1] [--port 8000] [--max-upload-mb 20] [--max-batch 16]
             [--max-queue 64] [--timeout 60]
"""

from __future__ import annotations

import argparse
import sys

from rnncap.cli.args import add_model_option, positive

DESCRIPTION = """\
Serve a captioning web page (http://HOST:PORT/) and its JSON API:

  POST /api/caption   photos as multipart field "image" (one or more) or one
                      photo as the raw body (Content-Type image/jpeg, ...);
                      options model, beam, max_length, attention in the query
                      or the form -> {model, encoder, ms, captions: [{image,
                      caption, candidates: [{caption, logprob}], attention:
                      {words, grid, weights, crop} | null, ms}]}
  GET  /api/models    the models offered (the --model one is the default)
  GET  /api/health    ready: models and encoders loaded; queue and batches

Photos that arrive together are captioned as one batch. The model and its
encoder load once, before the server listens. Ctrl-C or SIGTERM: the requests
in flight finish, then it exits 0.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``rnncap serve`` to the command line."""
    serve = commands.add_parser(
        "serve",
        help="serve a captioning web page and API",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_option(serve)
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free one)")
    serve.add_argument(
        "--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest request body accepted (default 20)"
    )
    serve.add_argument(
        "--max-batch", type=positive, default=16, metavar="N", help="photos captioned together (default 16)"
    )
    serve.add_argument(
        "--max-queue", type=positive, default=64, metavar="N", help="photos waiting at most; past it 503 (default 64)"
    )
    serve.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="a request's longest wait for its captions (default 60)",
    )
    serve.add_argument("--only-model", action="store_true", help="offer only --model, not the other shipped models")
    serve.set_defaults(run=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    from rnncap.serve import ServeSettings, load_served_models
    from rnncap.serve.server import exposure_warning, serve, steady_memory

    if args.max_upload_mb <= 0 or args.timeout <= 0:
        raise ValueError("--max-upload-mb and --timeout must be more than 0")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be from 0 to 65535, got {args.port}")
    warning = exposure_warning(args.host)
    if warning is not None:
        print(f"rnncap serve: warning: {warning}", file=sys.stderr)
    settings = ServeSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_queue=args.max_queue,
        max_batch=args.max_batch,
        timeout_s=args.timeout,
    )
    steady_memory()  # before the models load: their arrays too
    models = load_served_models(args.model, shipped=not args.only_model)
    print(f"rnncap serve: models {', '.join(models.captioners)} (default {models.default})", file=sys.stderr)
    serve(models, settings, host=args.host, port=args.port)
    return 0
