"""DistributedDataParallel plumbing for CPU training under ``torchrun`` (gloo backend).

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


def init_distributed() -> DistContext:
    """Join the torchrun process group (gloo) when launched by torchrun; else a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size())
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # torchrun's protocol, not a stanflow setting
        return DistContext()
    dist.init_process_group(backend="gloo", init_method="env://")
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
