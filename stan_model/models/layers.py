"""Building blocks shared by every architecture.

* :class:`FeatureInput` -- ONE fused embedding table for all sparse fields (per-field offsets into
  it), so a batch costs one lookup whatever the number of fields.
* :class:`StackedLinear` / :class:`StackedMLP` -- ``n`` independent linear layers / MLPs stored as
  stacked weights and applied in one batched matmul: experts, gates and towers never loop in
  Python. :class:`StackedBatchNorm` -- ``n`` independent ``BatchNorm1d`` layers the same way.
* :class:`MultiTaskBCE` -- the loss object of the baselines: sum over tasks of the mean
  ``BCEWithLogits``.
* :class:`MultiTaskModel` -- the interface the trainer relies on: ``forward(batch, with_loss)``
  returns :class:`Output` (per-task logits, and the model's own loss), and
  ``user_representation(batch)`` gives the vector the lifecycle probe reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stan_model.data.tensors import Batch, FeatureSpec


@dataclass
class Output:
    logits: torch.Tensor  # (B, K) one logit per task
    loss: torch.Tensor | None = None  # scalar training objective (with_loss=True)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # detached pieces, for logs


class FeatureInput(nn.Module):
    """Sparse fields through one fused embedding table; dense features appended as they are."""

    def __init__(self, spec: FeatureSpec, embed_dim: int, copies: int = 1):
        super().__init__()
        sizes = torch.tensor([f.vocab_size for f in spec.sparse], dtype=torch.int64)
        offsets = torch.cumsum(sizes, 0) - sizes
        self.register_buffer("offsets", offsets.to(torch.int32), persistent=False)
        self.n_fields, self.n_dense = len(spec.sparse), len(spec.dense)
        self.embed_dim, self.copies = embed_dim, copies
        # ``copies`` > 1 gives each task its own table (single-task models) in the same lookup.
        self.table = nn.Embedding(int(sizes.sum()), embed_dim * copies)
        nn.init.normal_(self.table.weight, std=0.05)

    @property
    def out_dim(self) -> int:
        return self.n_fields * self.embed_dim + self.n_dense

    def embed(self, sparse: torch.Tensor) -> torch.Tensor:
        """(B, F) field indices -> (B, F, copies * E) embeddings."""
        return self.table(sparse + self.offsets)

    def forward(self, batch: Batch) -> torch.Tensor:
        emb = self.embed(batch.sparse)  # (B, F, E)
        return torch.cat([emb.flatten(1), batch.dense], dim=1)  # (B, F*E + D)


class StackedLinear(nn.Module):
    """``n`` linear maps ``in_dim -> out_dim`` at once: (n, B, in) or (B, in) -> (n, B, out)."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per map
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[0] == 1:  # one map: a plain addmm (keeps DDP's gradient layout)
            x2 = x if x.dim() == 2 else x[0]
            return torch.addmm(self.bias[0], x2, self.weight[0]).unsqueeze(0)  # (1, B, out)
        # (B, in) broadcasts against every map: all experts of a level read the same input.
        return torch.matmul(x, self.weight) + self.bias  # (n, B, out)


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and (biased) variance over the batch axis of (n, B, d) across every rank's batch,
    with gradients flowing back to each rank's own rows; and the global batch size."""
    from torch.distributed.nn.functional import all_reduce  # autograd-aware

    n, b, d = x.shape
    count = x.new_full((n, 1, d), float(b))
    sums = all_reduce(torch.cat([x.sum(1, keepdim=True), (x * x).sum(1, keepdim=True), count], 1))
    total = sums[:, 2:3]
    mean = sums[:, 0:1] / total
    var = (sums[:, 1:2] / total - mean * mean).clamp_min(0.0)
    return mean, var, int(total[0, 0, 0].item())


class StackedBatchNorm(nn.Module):
    """``n`` independent ``BatchNorm1d(dim)`` on (n, B, dim): statistics over the batch axis, per
    map and feature; the same training/eval semantics, momentum and eps as ``BatchNorm1d``.

    Under ``torchrun`` (a process group of more than one rank) the statistics are those of the
    global batch, summed over ranks with an autograd-aware all-reduce, as ``SyncBatchNorm``
    does: two ranks with half a batch each normalise exactly as one process with the whole
    batch, so distributed training keeps the single-process semantics."""

    def __init__(self, n: int, dim: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))
        self.register_buffer("running_mean", torch.zeros(n, 1, dim))
        self.register_buffer("running_var", torch.ones(n, 1, dim))
        self.momentum, self.eps = momentum, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and _world_size() > 1:
            return self._synced(x)
        # One process: PyTorch's fused kernel on a (B, n * dim) view -- one BatchNorm1d of
        # n * dim features; 2x faster forward + backward than composing it from var_mean here.
        n, b, d = x.shape
        y = F.batch_norm(
            x.transpose(0, 1).reshape(b, n * d),
            self.running_mean.view(-1),  # views: the kernel updates the buffers in place
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return y.view(b, n, d).transpose(0, 1)

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        mean, var, b = _global_moments(x)  # (n, 1, d), over every rank's batch
        with torch.no_grad():
            self.running_mean.lerp_(mean.float(), self.momentum)
            self.running_var.lerp_(var.float() * (b / max(b - 1, 1)), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)  # (n, 1, d)
        return torch.addcmul(self.bias - mean * scale, x, scale)


class StackedMLP(nn.Module):
    """``n`` independent MLPs run as batched matmuls: every layer is linear, then BatchNorm when
    ``batch_norm`` (torch-rechub's ``MLP`` layout), ReLU, dropout."""

    def __init__(
        self,
        n: int,
        in_dim: int,
        dims: tuple[int, ...],
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        sizes = (in_dim, *dims)
        self.layers = nn.ModuleList(
            StackedLinear(n, a, b) for a, b in zip(sizes, sizes[1:], strict=False)
        )
        self.norms = nn.ModuleList(StackedBatchNorm(n, d) for d in dims) if batch_norm else None
        self.dropout = nn.Dropout(dropout)
        self.out_dim = sizes[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)  # (n, B, d)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.dropout(F.relu(x))
        return x


class Gates(nn.Module):
    """``n`` softmax gates over ``experts`` each: linear, BatchNorm when ``batch_norm`` (as
    torch-rechub's gates), softmax. (B, in) or (n, B, in) -> (n, B, experts)."""

    def __init__(self, n: int, in_dim: int, experts: int, batch_norm: bool = False):
        super().__init__()
        self.linear = StackedLinear(n, in_dim, experts)
        self.norm = StackedBatchNorm(n, experts) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.softmax(self.norm(z) if self.norm is not None else z, dim=-1)


class TaskTowers(nn.Module):
    """One MLP tower per task ending in a logit: (K, B, in) -> (B, K)."""

    def __init__(
        self,
        n_tasks: int,
        in_dim: int,
        dims: tuple[int, ...],
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        super().__init__()
        self.hidden = StackedMLP(n_tasks, in_dim, dims, dropout, batch_norm)
        self.head = StackedLinear(n_tasks, self.hidden.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(x)).squeeze(-1).transpose(0, 1)  # (K, B, 1) -> (B, K)


class MultiTaskBCE(nn.Module):
    """Baselines' objective: ``sum_k mean_b BCEWithLogits(logit_bk, y_bk)``, optional weights."""

    def __init__(self, task_weights: tuple[float, ...] | None = None):
        super().__init__()
        weights = torch.tensor(task_weights or (), dtype=torch.float32)
        self.register_buffer("task_weights", weights, persistent=False)

    def forward(self, logits: torch.Tensor, batch: Batch) -> Output:
        per_task = F.binary_cross_entropy_with_logits(
            logits.float(), batch.labels, reduction="none"
        ).mean(0)  # (K,)
        weighted = per_task * self.task_weights if self.task_weights.numel() else per_task
        parts = {"bce": per_task.detach().sum()}
        return Output(logits=logits, loss=weighted.sum(), parts=parts)


class MultiTaskModel(nn.Module):
    """What the trainer and the evaluation rely on; subclasses set ``inputs`` and ``objective``."""

    inputs: FeatureInput
    objective: nn.Module

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.spec = spec
        self.n_tasks = len(spec.tasks)
        self.register_buffer(
            "_user_sparse", torch.tensor(spec.user_sparse, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "_user_dense", torch.tensor(spec.user_dense, dtype=torch.long), persistent=False
        )

    def logits(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, batch: Batch, with_loss: bool = False) -> Output:
        logits = self.logits(batch)
        return self.objective(logits, batch) if with_loss else Output(logits=logits)

    def user_representation(self, batch: Batch) -> torch.Tensor:
        """The user side of the input as this model embeds it: user-field embeddings and the
        user's dense history features, (B, F_user * E + D_user). STAN overrides this with its
        state-aware embedding."""
        emb = self.inputs.embed(batch.sparse)[:, self._user_sparse]  # (B, Fu, copies*E)
        return torch.cat([emb.flatten(1), batch.dense[:, self._user_dense]], dim=1)

    @torch.no_grad()
    def init_base_rates(self, label_rate: torch.Tensor, pseudo_rate: torch.Tensor) -> None:
        """Start every task's output bias at the log-odds of its training base rate (K,), so
        training does not spend its first thousand steps walking rare tasks' logits down from
        0 (p = 0.5). ``pseudo_rate`` is for models that also predict the pseudo-labels."""
        logit = torch.logit(label_rate.clamp(1e-4, 1 - 1e-4))
        for module in self.modules():
            if isinstance(module, TaskTowers):
                module.head.bias.copy_(logit.view(-1, 1, 1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
