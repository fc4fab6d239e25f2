"""Synchronous data-parallel training, the engine's side: what the :class:`~rnncap.train.Trainer` asks of the
processes it trains with, and the arithmetic that makes P processes take the step one process would.

Every process holds the whole model and the same generator (same seed), so each draws the same permutation of the
training captions. Each global batch of n captions is cut into P contiguous blocks (:func:`block`, the order of
``np.array_split``); process r computes the loss and gradients of its block, with the dropout masks of those rows of
the global batch (:class:`~rnncap.nn.DropoutDraws`). The model's loss is a mean over the captions it is given, so
process r weighs its loss and gradients by ``n_r / n``, and their sum over the processes is the mean over the
global batch: :class:`GradientReducer` writes them into one flat buffer and sums it over the processes in one
all-reduce. Clipping, the divergence check and the update rule then run on identical numbers in every process,
so the parameters stay identical without ever being sent.

The transport is a :class:`Communicator`. :data:`SINGLE_PROCESS`, the default, is one process alone; the
torch.distributed one (gloo on the CPU, NCCL for device arrays) is :mod:`rnncap.apps.distributed`, outside the
engine, which imports no torch. Anything that speaks the protocol works (an MPI one would be as short).

Reference: Goyal et al. 2017, "Accurate, Large Minibatch SGD" (the global batch, gradients averaged over workers);
PyTorch's DistributedDataParallel (one all-reduce of flat buckets of gradients).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rnncap.backend import array_module, to_numpy


@runtime_checkable
class Communicator(Protocol):
    """The processes of one data-parallel run, as the trainer uses them.

    ``rank`` is this process's place in [0, ``world_size``); process 0 writes the run's files and scores the model.
    ``all_reduce_sum(buffer)`` replaces a 1-D NumPy (or device) array, in place, by its sum over the processes;
    ``broadcast(value)`` returns process 0's ``value`` (any picklable object) in every process; ``barrier()``
    returns once every process has called it.
    """

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def all_reduce_sum(self, buffer: Any) -> None: ...

    def broadcast(self, value: Any) -> Any: ...

    def barrier(self) -> None: ...


class SingleProcess:
    """One process alone: rank 0 of 1; the sum and the broadcast of one process's values are those values."""

    rank = 0
    world_size = 1

    def all_reduce_sum(self, buffer: Any) -> None:
        return None

    def broadcast(self, value: Any) -> Any:
        return value

    def barrier(self) -> None:
        return None


SINGLE_PROCESS = SingleProcess()


def check_communicator(communicator: object) -> Communicator:
    """``communicator`` if it speaks :class:`Communicator` with a rank in [0, world_size).

    Raises:
        ValueError: something else.
    """
    if not isinstance(communicator, Communicator):
        raise ValueError(
            f"communicator must offer rank, world_size, all_reduce_sum, broadcast and barrier, got "
            f"{type(communicator).__name__}"
        )
    rank, world = communicator.rank, communicator.world_size
    if not (isinstance(world, int) and isinstance(rank, int) and 0 <= rank < world):
        raise ValueError(f"a communicator needs integers 0 <= rank < world_size, got rank {rank!r} of {world!r}")
    return communicator


def block(n: int, rank: int, world_size: int) -> slice:
    """The rows ``start:stop`` of a global batch of ``n`` that process ``rank`` of ``world_size`` computes.

    Contiguous blocks in the order of ``np.array_split``: the first ``n % world_size`` processes take one row more;
    with ``n < world_size`` the last processes take none (the last, short batch of an epoch).
    """
    size, extra = divmod(n, world_size)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


class GradientReducer:
    """Sums weighted losses and gradients over the processes through one flat buffer and one all-reduce.

    The buffer holds every gradient (in the order of ``params``) followed by the loss, in the parameters' dtype and
    on their device; it is allocated once and the gradients returned are views of it, so that nothing but the one
    copy into the buffer happens on this side (the communicator shares the buffer's memory with its transport).
    """

    def __init__(self, params: Mapping[str, Any], communicator: Communicator) -> None:
        arrays = list(params.values())
        xp = array_module(*arrays)
        self.communicator = communicator
        self.buffer = xp.zeros(sum(int(a.size) for a in arrays) + 1, dtype=arrays[0].dtype)  # (P + 1,)
        self._views: dict[str, Any] = {}
        start = 0
        for name, array in params.items():
            self._views[name] = self.buffer[start : start + array.size].reshape(array.shape)
            start += int(array.size)

    @property
    def num_values(self) -> int:
        """Numbers summed per step: every parameter's gradient and the loss."""
        return int(self.buffer.size)

    def reduce(self, loss: float, grads: Mapping[str, Any], weight: float) -> tuple[float, dict[str, Any]]:
        """``sum over processes of weight * (loss, grads)``: the loss and gradients of the global batch.

        Args:
            loss: this process's mean loss over its captions; grads: its gradients keyed like the parameters, or
                empty for a process without captions in this batch (then ``weight`` is 0).
            weight: this process's share of the global batch, ``n_r / n``.

        Returns:
            The global loss and gradients: views of the buffer, valid until the next call.
        """
        if grads:
            for name, view in self._views.items():
                array_module(view).multiply(grads[name], weight, out=view)
            self.buffer[-1] = loss * weight
        else:
            self.buffer.fill(0)
        self.communicator.all_reduce_sum(self.buffer)
        return float(self.buffer[-1]), dict(self._views)


def sum_over_processes(communicator: Communicator, values: list[float]) -> list[float]:
    """Each of ``values`` summed over the processes, in float64 (the validation loss's totals)."""
    buffer = np.array(values, dtype=np.float64)
    communicator.all_reduce_sum(buffer)
    return [float(value) for value in buffer]


def run_digest(arrays: Mapping[str, Sequence[Any]], facts: Mapping[str, Any]) -> dict[str, Any]:
    """What every process of a run must hold alike before it trains: ``facts`` (JSON numbers: the epoch, the
    config, the generator's state) and a SHA-256 of each group of ``arrays`` by name (the parameters, the captions)."""
    digest = {**json.loads(json.dumps(facts, default=str))}
    for name, group in arrays.items():
        sha = hashlib.sha256()
        for array in group:
            sha.update(np.ascontiguousarray(to_numpy(array)).tobytes())
        digest[name] = sha.hexdigest()
    return digest


def check_same_run(communicator: Communicator, digest: Mapping[str, Any], hint: str) -> None:
    """Raise ValueError in every process unless every process's ``digest`` (:func:`run_digest`) is process 0's.

    Every process learns of a difference anywhere (an all-reduce of the count of those that differ), so that none
    is left waiting at the next all-reduce for a process that stopped.

    Raises:
        ValueError: naming what differs from process 0 here (or that another process differs), with ``hint``.
    """
    reference = communicator.broadcast(dict(digest))
    differing = [key for key in sorted(reference.keys() | digest.keys()) if reference.get(key) != digest.get(key)]
    (count,) = sum_over_processes(communicator, [float(bool(differing))])
    if differing:
        what = ", ".join(key for key in differing)
        raise ValueError(f"process {communicator.rank} does not hold process 0's run: its {what} differ. {hint}")
    if count:
        raise ValueError(f"{int(count)} of the {communicator.world_size} processes do not hold process 0's run. {hint}")
