"""DistributedDataParallel plumbing under ``torchrun``: gloo on CPUs, NCCL on GPUs.

``torchrun`` announces a distributed run through its own environment variables (``WORLD_SIZE``,
``RANK``, ``MASTER_ADDR`` ...); :func:`init_distributed` reads them through
``torch.distributed``'s ``env://`` protocol. Without them, everything is a no-op on one process.
Each rank trains on its own shard of the training rows (:func:`shard_rows`); rank 0 alone writes
checkpoints, model files and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def local_rank() -> int:
    """This process's index on its node (torchrun's ``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(device: str) -> torch.device:
    """``auto``: this process's GPU (``cuda:<LOCAL_RANK>``) when CUDA is available, else the CPU;
    ``cpu`` / ``cuda`` as asked (``cuda`` without a GPU is an error, not a silent fallback)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda; got {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for, but this torch sees no CUDA device")
    return torch.device("cuda", local_rank() % torch.cuda.device_count())


def init_distributed(device: torch.device | None = None) -> DistContext:
    """Join the torchrun process group when launched by torchrun (NCCL when training on GPUs,
    gloo on CPUs); else a single process. ``device``: where this process trains (default: the
    ``auto`` device)."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # torchrun's protocol, not a stanflow setting
        return DistContext()
    device = device if device is not None else resolve_device("auto")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL's collectives run on this process's own GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistContext(dist.get_rank(), dist.get_world_size())


def shard_rows(n_rows: int, ctx: DistContext, seed: int) -> torch.Tensor:
    """This rank's rows: a fixed seeded permutation cut into equal shards.

    Equal sizes keep every rank at the same number of steps (DDP's collectives must match); the
    at most ``world_size - 1`` leftover rows are dropped.
    """
    if not ctx.active:
        return torch.arange(n_rows)
    perm = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed))
    size = n_rows // ctx.world_size
    return perm[ctx.rank * size : (ctx.rank + 1) * size].sort().values


def mean_over_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Average a tensor over ranks (for logging: every rank's epoch loss)."""
    if not ctx.active:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / ctx.world_size


def shutdown_distributed() -> None:
    """Leave the process group (end of a torchrun command); a no-op on one process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.active:
        dist.barrier()
