"""Data-parallel training over processes and machines, launched by ``torchrun``.

Each update reads ``accumulate × world size`` batches; process r takes every world-size-th of them from
the r-th on, so all processes together see exactly the batches one process would see with that much
gradient accumulation, and ``DistributedDataParallel`` averages the gradients.  Only rank 0 validates,
logs and writes checkpoints; every decision taken from what rank 0 alone measured (the time budget,
the dev score) is broadcast so all processes stop and decay together.

A single process (no ``torchrun``, or a world of one) never touches ``torch.distributed``.
"""

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, value: float, device: torch.device) -> float:
        """``value`` summed over all processes."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor)

    def from_main(self, obj):
        """Rank 0's ``obj``, on every process."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def wait_for_main(self) -> None:
        """A barrier that waits up to ``LONG_WAIT``, not the process group's timeout (10 minutes with
        NCCL): for the other processes while rank 0 prepares a large corpus."""
        if self.size > 1:
            dist.barrier(group=dist.new_group(backend="gloo", timeout=LONG_WAIT))


ONE_PROCESS = World()
LONG_WAIT = timedelta(hours=12)


def launched_world_size() -> int:
    """How many processes ``torchrun`` started (1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_world(device: torch.device) -> World:
    """Join the process group ``torchrun`` set up (NCCL on GPUs, gloo on CPUs); one process: no group."""
    if launched_world_size() == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process on a machine takes its own GPU (``LOCAL_RANK``)."""
    if device.type == "cuda" and launched_world_size() > 1 and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device
