"""Sharded feature extraction: the photos of one preparation cut into n shards, each extracted on its own (another
process, another machine), the parts merged into the file the unsharded ``rnncap prepare`` writes.

Three ways in:

- ``rnncap prepare SOURCE ... --shard i/n --out part.h5``: :func:`~rnncap.apps.prepare.prepare_dataset` with
  ``shard=(i, n)``. Shard i holds the photos of rows ``i*M//n .. (i+1)*M//n - 1`` (contiguous blocks, see
  :func:`rnncap.data.store_create.shard_rows`), all their captions and the whole data set's vocabulary; it resumes
  like a whole file when run again.
- ``rnncap prepare merge --out full.h5 part0.h5 part1.h5 ...``: :func:`merge_prepared`, which checks that the parts
  are every shard of one complete extraction (:mod:`rnncap.data.store_merge`).
- ``torchrun --nproc-per-node N -m rnncap prepare SOURCE ... --out full.h5``: :func:`prepare_distributed`. Each
  process (RANK of WORLD_SIZE, from torchrun's environment) extracts its shard into :func:`part_path` beside
  ``--out``; after a barrier (torch.distributed over gloo, which every CPU build of torch has) process 0 merges
  the parts into ``--out`` and removes them. A barrier rather than files that announce a finished shard: torchrun
  already starts the processes and tears all of them down when one fails, so no process waits on a shard that
  will never come, and no marker file can be left behind stale. Running the same command again resumes each
  shard's part, or finds ``--out`` finished and does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rnncap.apps.outputs import OVERWRITE_HINT, OutputError, check_outputs, check_writable
from rnncap.apps.prepare import Extraction, PrepareResult, prepare_records_into
from rnncap.data import Dataset, StoreError, open_store, prepare_records
from rnncap.data.store_create import StoreContents, stored_fingerprint
from rnncap.data.store_merge import MergeResult, merge_shards

# How long a finished process waits at the barrier for the slowest shard: a COCO shard takes hours on a CPU. A
# process that fails ends the whole job through torchrun, not through this timeout.
BARRIER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class DistributedResult:
    """What one process of :func:`prepare_distributed` did.

    Attributes:
        rank, world: this process's shard and the number of shards.
        shard: the preparation of this process's part; None when ``--out`` already held the finished preparation.
        merged: the merge, on process 0 only (None on the others, and when nothing was left to do).
    """

    rank: int
    world: int
    shard: PrepareResult | None
    merged: MergeResult | None


def torchrun_shard(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` as torchrun sets them; None outside torchrun or with a single process.

    Raises:
        ValueError: RANK or WORLD_SIZE set but not integers with 0 <= RANK < WORLD_SIZE.
    """
    if "WORLD_SIZE" not in environ and "RANK" not in environ:
        return None
    rank, world = environ.get("RANK", ""), environ.get("WORLD_SIZE", "")
    if not (rank.isdigit() and world.isdigit() and int(rank) < int(world)):
        raise ValueError(
            f"RANK={rank!r} WORLD_SIZE={world!r}: expected integers with 0 <= RANK < WORLD_SIZE, as torchrun sets "
            "them (unset both to run in one process)"
        )
    return None if int(world) == 1 else (int(rank), int(world))


def part_path(out: str | os.PathLike, index: int, count: int) -> Path:
    """The part file of shard ``index`` of ``count`` beside ``out``: ``full.h5`` -> ``full.shard-0-of-2.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.shard-{index}-of-{count}{out.suffix}")


def merge_prepared(
    parts: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True
) -> MergeResult:
    """Merge the part files of a sharded extraction into ``out`` (:func:`rnncap.data.store_merge.merge_shards`),
    after the one rule for outputs: an existing ``out`` only with ``overwrite``, never one of the parts.

    Raises:
        OutputError: ``out`` exists (without ``overwrite``), is one of ``parts`` or cannot be written.
        StoreError: parts that are not every shard of one complete extraction, with what is wrong.
    """
    check_outputs({"--out": out}, overwrite=overwrite, inputs=parts)
    return merge_shards(out, parts, overwrite=overwrite, progress=progress)


def prepare_distributed(
    dataset: Dataset,
    out: str | os.PathLike,
    rank: int,
    world: int,
    extraction: Extraction,
    *,
    min_count: int = 5,
    max_length: int = 16,
    word_to_idx: Mapping[str, int] | None = None,
    overwrite: bool = False,
) -> DistributedResult:
    """One process of a torchrun job: extract shard ``rank`` of ``world`` into its :func:`part_path`, wait for
    every shard, and on process 0 merge the parts into ``out`` and remove them.

    The other arguments are :func:`~rnncap.apps.prepare.prepare_dataset`'s. The processes share the machine's
    cores: each runs its encoder on its share of them (LOCAL_WORLD_SIZE processes per machine, as torchrun sets).

    Raises:
        OutputError: ``out`` cannot be written, or exists without ``overwrite`` and holds anything but this
            preparation finished with this encoder (checked before any photo is encoded).
    """
    out = Path(out)
    check_writable(out, "--out")
    prepared = prepare_records(dataset, min_count=min_count, max_length=max_length, word_to_idx=word_to_idx)
    if os.path.lexists(out) and not overwrite:
        whole = StoreContents.from_records(dataset, *prepared, root=dataset.root, name=dataset.name)
        if _finished(out, whole.fingerprint, extraction.encoder):
            return DistributedResult(rank, world, None, None)
        raise OutputError(
            f"--out {out} already exists and holds other data or an unfinished extraction (finish that one with "
            f"the same command outside torchrun); {OVERWRITE_HINT}"
        )
    import torch.distributed as dist  # only here: the rest of prepare needs no torch

    dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)  # env:// rendezvous, from torchrun's variables
    try:
        cores = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        result = prepare_records_into(
            dataset,
            prepared,
            part_path(out, rank, world),
            extraction,
            overwrite=overwrite,
            shard=(rank, world),
            threads=cores,
            position=rank,
        )
        dist.barrier()  # every part complete
        merged = None
        if rank == 0:
            parts = [part_path(out, index, world) for index in range(world)]
            merged = merge_shards(out, parts, overwrite=overwrite, progress=extraction.progress)
            for part in parts:
                part.unlink()
    finally:
        dist.destroy_process_group()
    return DistributedResult(rank, world, result, merged)


def _finished(path: Path, fingerprint: str, encoder: str) -> bool:
    """Whether ``path`` holds this very preparation (``fingerprint``) with every feature of ``encoder`` extracted."""
    if stored_fingerprint(path) != fingerprint:
        return False
    try:
        with open_store(path) as store:
            return store.encoder == encoder and store.pending().size == 0
    except StoreError:
        return False
