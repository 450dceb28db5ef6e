"""torch.distributed helpers for multi-GPU image runs (torchrun + DDP; gloo on CPU for tests).

``torchrun --nproc_per_node N -m minilib train ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_from_env` then joins the process group (NCCL on CUDA, gloo on CPU) and picks this
rank's device. The Trainer wraps G and D in DistributedDataParallel once the group exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_from_env", "barrier", "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size`` processes, its ``device``."""

    rank: int
    world_size: int
    device: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str) -> DistInfo:
    """Join the process group when ``WORLD_SIZE > 1`` (set by torchrun) and return this rank's info.

    ``device``: ``"cpu"``, ``"cuda"`` (becomes ``cuda:LOCAL_RANK`` under torchrun) or ``"cuda:i"``.
    Single-process runs return ``DistInfo(0, 1, device)`` and touch nothing.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, device)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
