"""The one trainer: Adam, early stopping on the validation days, a checkpoint every epoch and
resume from it, optional bf16 autocast, DistributedDataParallel under ``torchrun``.

It never looks at the model's type: every model returns its own loss from
``model(batch, with_loss=True)``. Determinism: the shuffling order and every random draw of an
epoch (dropout, STAN's Beta draws) come from seeds derived from ``(seed, epoch, rank)``, so a run
resumed from an epoch checkpoint ends exactly where an uninterrupted run ends.

Checkpoints (:mod:`stan_model.training.checkpoint`) are written by rank 0 after every epoch, as
safetensors and JSON: resuming never unpickles anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from stan_model.data.dataset import WorldData
from stan_model.models import MultiTaskModel
from stan_model.training.checkpoint import (
    BEST,
    load_best,
    load_checkpoint,
    save_checkpoint,
    save_tensors,
)
from stan_model.training.distributed import (
    DistContext,
    barrier,
    init_distributed,
    mean_over_ranks,
    resolve_device,
    shard_rows,
)
from stan_model.training.evaluation import predict, task_scores

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 10  # upper bound; early stopping usually ends sooner
    batch_size: int = 2048  # global batch, split evenly across DDP ranks (the paper's 2048)
    lr: float = 1e-3  # Adam learning rate (the paper's)
    weight_decay: float = 0.0  # Adam L2; embeddings of rare ids rarely need it at these sizes
    patience: int = 2  # epochs without a better validation mean AUC before stopping
    min_delta: float = 1e-5  # smallest validation-AUC gain that counts as better
    seed: int = 0  # shuffling, dropout and STAN's Beta draws all derive from it
    bf16: bool = False  # bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX, and on GPUs)
    # auto: this process's GPU when CUDA is available (NCCL under torchrun), else the CPU (gloo)
    device: str = "auto"
    eval_batch_size: int = 16384  # validation / test batch: no gradients, so larger
    progress: bool = True  # a tqdm bar per epoch (rank 0)
    resume: bool = True  # continue from the checkpoint folder when it holds a run
    # torch intra-op threads for this process (0: torch's default, one per core). On a shared
    # machine 1 avoids OpenMP threads spinning against other processes (10x slowdowns seen).
    threads: int = 0
    # Keep the step's large activations in glibc's heap instead of fresh mmap()s (see
    # :func:`tune_allocator`): 5-10 % faster steps on CPUs. Off: glibc's defaults.
    tune_allocator: bool = True


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # one record per epoch
    best_epoch: int = -1
    best_valid_auc: float = float("-inf")
    samples_per_s: float = 0.0  # training rows per second over all ranks, validation excluded
    stopped_early: bool = False


def _has_unused_parameters(model: MultiTaskModel, batch) -> bool:
    """Whether some parameter gets no gradient (an ablation switch can cut a branch off); DDP
    must then look for them every step, which costs a graph traversal, so only then."""
    model(batch, with_loss=True).loss.backward()
    unused = any(p.grad is None for p in model.parameters() if p.requires_grad)
    model.zero_grad(set_to_none=True)
    return unused


class _RowView:
    """Rows ``index`` of a bundle, gathered per batch: ``len`` and ``batch`` as a bundle."""

    def __init__(self, bundle, index: torch.Tensor):
        self.bundle, self.index = bundle, index

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows: torch.Tensor | slice):
        return self.bundle.batch(self.index[rows])


# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # the most glibc accepts on 64-bit
_TRIM_THRESHOLD = 1 << 30


def tune_allocator() -> bool:
    """Let this process's heap keep the training step's large blocks between steps.

    A step allocates and frees the same activations every time; at batch 2048 the first expert
    layer's are 16 MiB each. glibc serves blocks that large with a fresh ``mmap()`` and unmaps
    them when freed (or trims the heap top back to the kernel), so every step page-faults ~27k
    fresh zero pages in again: 5-10 % of a CPU step (measured on the #8 benchmark's PLE: ~6.9k
    faults and 74-78 ms per step before, ~60 faults and 69-74 ms after). Raising the mmap
    threshold to its 32 MiB maximum and the trim threshold to 1 GiB keeps those blocks in the
    heap for reuse, as jemalloc or tcmalloc (PyTorch's CPU tuning guide) would, without
    ``LD_PRELOAD``. Blocks over 32 MiB still come from ``mmap()``; an explicit ``malloc_trim``
    (:func:`stan_model.data.dataset.return_freed_memory`) still hands freed memory back.

    Process-wide, like ``torch.set_num_threads``; :func:`train` calls it unless
    ``TrainConfig.tune_allocator`` is off. Returns whether it applied (False off glibc)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
            and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # not glibc (macOS, musl)
        return False


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with PyTorch's fused kernel (one pass over each parameter, grad, and moment;
    same update as the per-tensor loop) where the parameters' device supports it."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def autocast_for(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def train_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch,
    autocast: contextlib.AbstractContextManager,
):
    """One optimisation step: forward with the model's own loss, backward, Adam. Returns the
    model's :class:`~stan_model.models.Output`. The trainer and ``bench/train_speed.py`` both
    call this, so the benchmark times exactly what training does."""
    with autocast:
        out = net(batch, with_loss=True)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return out


def train(
    model: MultiTaskModel,
    data: WorldData,
    cfg: TrainConfig,
    checkpoint_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``model`` on ``data``'s training split; leaves it holding its best-epoch weights."""
    device = resolve_device(cfg.device)
    ctx = init_distributed(device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if cfg.tune_allocator and device.type == "cpu":
        tune_allocator()
    model.to(device)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    optimizer = make_optimizer(model, cfg)
    result, start_epoch, bad_epochs = TrainResult(), 0, 0
    progress = load_checkpoint(ckpt, model, optimizer) if ckpt and cfg.resume else None
    if progress is not None:
        start_epoch, bad_epochs = progress["epoch"], progress["bad_epochs"]
        result = TrainResult(
            progress["history"],
            progress["best_epoch"],
            progress["best_valid_auc"],
            stopped_early=progress["stopped_early"],
        )
        log.info("resuming from %s after epoch %d", ckpt, start_epoch)
    if ckpt is not None and ctx.is_main:
        ckpt.mkdir(parents=True, exist_ok=True)

    train_rows = torch.from_numpy(data.splits["train"])
    shard_index = train_rows[shard_rows(len(train_rows), ctx, cfg.seed)]
    if device.type == "cpu":
        # Batches gather their rows from the whole bundle: a copy of the shard would only
        # double the training rows' memory (0.7 GiB on wechat) for the same gathers.
        shard = _RowView(data.bundle, shard_index)
    else:  # the rank's shard moves to its device once; validation batches move as scored
        shard = data.bundle.take(shard_index).to(device)
    valid = data.split("valid")
    local_batch = max(1, cfg.batch_size // ctx.world_size)
    net = model
    if ctx.active:
        unused = _has_unused_parameters(model, shard.batch(slice(0, min(len(shard), 64))))
        device_ids = [device] if device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids, find_unused_parameters=unused)
    autocast = autocast_for(device, cfg.bf16)
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if ckpt is not None and progress is not None:
        best_weights = load_best(ckpt) or best_weights
    seen_total, train_time = 0, 0.0

    for epoch in range(start_epoch, cfg.epochs):
        if result.stopped_early:
            break
        torch.manual_seed(cfg.seed * 1_000_003 + epoch * 7_919 + ctx.rank)  # dropout, Beta draws
        order = torch.randperm(
            len(shard), generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        ).to(device)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        steps = range(0, len(shard), local_batch)
        bar = tqdm(
            steps,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not (cfg.progress and ctx.is_main),
            leave=False,
        )
        t0 = time.perf_counter()
        for start in bar:
            out = train_step(
                net, optimizer, shard.batch(order[start : start + local_batch]), autocast
            )
            for name, value in {"loss": out.loss.detach(), **out.parts}.items():
                sums[name] = sums.get(name, 0.0) + value.float() * len(out.logits)
            if start // local_batch % 20 == 0:
                bar.set_postfix(loss=f"{out.loss.item():.4f}")
        epoch_time = time.perf_counter() - t0
        train_time += epoch_time
        seen_total += len(shard) * ctx.world_size
        names = sorted(sums)
        means = mean_over_ranks(torch.stack([sums[n] for n in names]) / len(shard), ctx)

        scores = task_scores(
            predict(model, valid, cfg.eval_batch_size, cfg.bf16),
            valid.labels.numpy(),
            data.spec.tasks,
        )
        record = {
            "epoch": epoch + 1,
            "train": {n: float(v) for n, v in zip(names, means, strict=True)},
            "valid_loss": scores["loss"],
            "valid_mean_auc": scores["mean_auc"],
            "valid_auc": scores["auc"],
            "samples": len(shard) * ctx.world_size,  # training rows seen, all ranks together
            "samples_per_s": len(shard) * ctx.world_size / epoch_time,
        }
        result.history.append(record)
        if scores["mean_auc"] > result.best_valid_auc + cfg.min_delta:
            result.best_valid_auc, result.best_epoch, bad_epochs = scores["mean_auc"], epoch + 1, 0
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if ckpt is not None and ctx.is_main:
                save_tensors(model.state_dict(), ckpt / BEST)
        else:
            bad_epochs += 1
        result.stopped_early = bad_epochs >= cfg.patience
        if ctx.is_main:
            log.info(
                "epoch %d: train loss %.5f, valid loss %.5f, valid mean AUC %.5f (%s), "
                "%.0f samples/s",
                epoch + 1,
                record["train"]["loss"],
                scores["loss"],
                scores["mean_auc"],
                ", ".join(f"{t} {a:.4f}" for t, a in scores["auc"].items()),
                record["samples_per_s"],
            )
            if ckpt is not None:
                save_checkpoint(
                    ckpt,
                    model,
                    optimizer,
                    {
                        "epoch": epoch + 1,  # epochs completed
                        "bad_epochs": bad_epochs,
                        "best_epoch": result.best_epoch,
                        "best_valid_auc": result.best_valid_auc,
                        "stopped_early": result.stopped_early,
                        "history": result.history,
                    },
                )
        barrier(ctx)

    result.samples_per_s = seen_total / train_time if train_time > 0 else 0.0
    model.load_state_dict(best_weights)
    model.eval()
    return result


def is_main_process() -> bool:
    return init_distributed().is_main


__all__ = [
    "DistContext",
    "TrainConfig",
    "TrainResult",
    "autocast_for",
    "is_main_process",
    "make_optimizer",
    "train",
    "train_step",
]
