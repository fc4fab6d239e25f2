"""torch.distributed as the trainer's :class:`~rnncap.train.distributed.Communicator`: what ``torchrun ... rnncap
train`` trains with, on one machine or several.

::

    torchrun --nproc-per-node 2 -m rnncap train --data flickr8k.h5 ...                  # two processes here
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m rnncap train ...

torchrun starts the processes and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
:func:`torchrun_communicator` joins them (``env://``) over gloo for a run on the CPU, or NCCL for one on GPUs
(``--device cuda``, one GPU per process: LOCAL_RANK's). Where the engine's buffers live decides the path of the
bytes, never a copy made for the transport: a NumPy buffer is summed in place through ``torch.from_numpy``, a CuPy
one through DLPack (``torch.from_dlpack``), both sharing the array's memory.

In Python, after ``torch.distributed.init_process_group`` or instead of it::

    with torchrun_communicator("cpu") as communicator:
        fit(data, out_dir, settings, config, communicator=communicator)

Torch is imported when a communicator is made, not before: the rest of rnncap trains without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np

from rnncap.apps.prepare_shards import torchrun_shard
from rnncap.backend import check_device, module_for
from rnncap.train.distributed import SINGLE_PROCESS, Communicator

# How long a process waits for the others at a collective: process 0 scores the model (greedy captions of every
# validation photo: minutes on COCO's 5000) and writes the run's files while the others wait at a barrier. A process
# that fails ends the whole job through torchrun, not through this timeout.
TIMEOUT = timedelta(hours=2)


class TorchCommunicator:
    """The processes of torch.distributed's default process group (one it started, or one already started)."""

    def __init__(self, backend: str = "gloo", *, init_method: str = "env://", timeout: timedelta = TIMEOUT) -> None:
        """Join the default process group, initialising it unless it is already (then its backend is kept).

        Args:
            backend: ``"gloo"`` (the CPU; every build of torch has it) or ``"nccl"`` (GPUs).
            init_method: how the processes find each other; ``env://`` reads MASTER_ADDR, MASTER_PORT, RANK and
                WORLD_SIZE, as torchrun sets them.
            timeout: the longest wait at a collective.
        """
        import torch.distributed as dist  # only here: training without torchrun needs no torch

        if not dist.is_available():
            raise RuntimeError("this build of torch has no torch.distributed: install one that has it")
        self._owns_group = not dist.is_initialized()  # a group the caller started is the caller's to end
        if self._owns_group:
            dist.init_process_group(backend, init_method=init_method, timeout=timeout)
        self._dist = dist
        self._backend = str(dist.get_backend())

    @property
    def rank(self) -> int:
        return int(self._dist.get_rank())

    @property
    def world_size(self) -> int:
        return int(self._dist.get_world_size())

    @property
    def backend(self) -> str:
        return self._backend

    def all_reduce_sum(self, buffer: Any) -> None:
        """Sum a 1-D NumPy or CuPy array over the processes, in place, through a tensor sharing its memory."""
        import torch

        if isinstance(buffer, np.ndarray):
            tensor = torch.from_numpy(buffer)
            if self._backend == "nccl":  # NCCL sums GPU memory only: a host buffer (a few totals) goes over and back
                on_gpu = tensor.cuda()
                self._dist.all_reduce(on_gpu)
                tensor.copy_(on_gpu.cpu())
                return
        else:
            tensor = torch.from_dlpack(buffer)  # the device array's memory, ordered after the work queued on it
        self._dist.all_reduce(tensor)
        if tensor.is_cuda:  # the engine's next kernels run on CuPy's stream: wait until the sum has landed
            torch.cuda.current_stream(tensor.device).synchronize()

    def broadcast(self, value: Any) -> Any:
        """Process 0's ``value`` (pickled) in every process."""
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        self._dist.barrier()

    def close(self) -> None:
        """Leave the process group, if this communicator started it."""
        if self._owns_group and self._dist.is_initialized():
            self._dist.destroy_process_group()


def backend_for(device: str) -> str:
    """The torch.distributed backend of a run on ``device``: NCCL for GPUs, gloo for the CPU."""
    return "nccl" if check_device(device) == "cuda" else "gloo"


@contextmanager
def torchrun_communicator(device: str = "cpu", environ: Mapping[str, str] = os.environ) -> Iterator[Communicator]:
    """The processes torchrun started, as a communicator for ``device``; one process alone outside torchrun (or
    with one process). On GPUs each process takes GPU LOCAL_RANK. The group is left when the ``with`` ends.

    Raises:
        ValueError: torchrun's RANK and WORLD_SIZE are set but not a rank of a world.
        DeviceError: ``device`` cannot be used here.
    """
    backend = backend_for(device)
    if torchrun_shard(environ) is None:
        yield SINGLE_PROCESS
        return
    if backend == "nccl":
        import torch

        local_rank = int(environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        module_for("cuda").cuda.Device(local_rank).use()  # where the model's CuPy arrays go
    communicator = TorchCommunicator(backend)
    try:
        yield communicator
    finally:
        communicator.close()
