"""Building blocks shared by every architecture.

* :class:`FeatureInput` -- ONE fused embedding table for all sparse fields (per-field offsets into
  it), so a batch costs one lookup whatever the number of fields.
* :class:`StackedLinear` / :class:`StackedMLP` -- ``n`` independent linear layers / MLPs stored as
  stacked weights, on batch-first activations (B, n, d): maps that read the same input (the
  first layer of a level's experts, the gates) are ONE matmul. :class:`StackedBatchNorm` --
  ``n`` independent ``BatchNorm1d`` layers as one fused kernel on the (B, n * d) memory.
* :class:`MultiTaskBCE` -- the loss object of the baselines: sum over tasks of the mean
  ``BCEWithLogits``.
* :class:`MultiTaskModel` -- the interface the trainer relies on: ``forward(batch, with_loss)``
  returns :class:`Output` (per-task logits, and the model's own loss), and
  ``user_representation(batch)`` gives the vector the lifecycle probe reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
        # index_select rather than nn.Embedding's lookup: the same rows and the same gradient,
        # but its backward (index_add) runs 2x faster on CPUs than embedding_dense_backward.
        # int64 indices: with int32 ones CPU index_add takes a slow path (2.5 ms against
        # 0.4 ms for a batch of 2048 x 16 fields).
        idx = (sparse + self.offsets).long()
        return self.table.weight.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)

    def forward(self, batch: Batch) -> torch.Tensor:
        emb = self.embed(batch.sparse)  # (B, F, E)
        return torch.cat([emb.flatten(1), batch.dense], dim=1)  # (B, F*E + D)


def _autocast_dtype(device: torch.device) -> torch.dtype | None:
    t = device.type
    return torch.get_autocast_dtype(t) if torch.is_autocast_enabled(t) else None


class _PerMapLinear(torch.autograd.Function):
    """``n`` GEMMs, map j on ``x[:, j]``, written side by side into one (B, n * out) output;
    the backward writes each map's input gradient into its slice of one (B, n, in) tensor.

    The same products as ``n`` ``addmm`` and a ``cat``, whose autograd would copy the outputs
    once more forward (the ``cat``) and the input gradients once more backward (``unbind``'s
    ``stack``): 16 MiB each way per second expert layer at batch 2048. Inputs share one dtype
    (the caller casts under autocast)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x (B, n, in), weight (n, in, out), bias (n, 1, out)
        n, _, o = weight.shape
        out = x.new_empty(x.shape[0], n * o)
        with torch.autocast(x.device.type, enabled=False):
            for j in range(n):
                cols = out[:, j * o : (j + 1) * o]
                if bias is None:
                    torch.mm(x[:, j], weight[j], out=cols)
                else:
                    torch.addmm(bias[j, 0], x[:, j], weight[j], out=cols)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):  # grad (B, n * out)
        x, weight = ctx.saved_tensors
        n, _, o = weight.shape
        grad_x = grad_w = grad_b = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_x = x.new_empty(x.shape)
                for j in range(n):
                    torch.mm(grad[:, j * o : (j + 1) * o], weight[j].t(), out=grad_x[:, j])
            if ctx.needs_input_grad[1] and weight.dtype == torch.float32 and n >= 4:
                # One batched GEMM: ~7-10 % faster than n of them for 8 float32 experts (MKL);
                # in bf16, or for a few small maps, the batched kernel is 2-8x slower.
                per_map = grad.view(grad.shape[0], n, o).transpose(0, 1)  # (n, B, out)
                grad_w = torch.bmm(x.transpose(0, 1).transpose(1, 2), per_map)
            elif ctx.needs_input_grad[1]:
                grad_w = torch.empty_like(weight)
                for j in range(n):
                    torch.mm(x[:, j].t(), grad[:, j * o : (j + 1) * o], out=grad_w[j])
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = grad.sum(0).view(n, 1, o)
        return grad_x, grad_w, grad_b


class _SharedLinear(torch.autograd.Function):
    """``n`` maps on one shared input: ONE GEMM ``x @ W`` with ``W`` (in, n * out) the maps'
    weights side by side. As ``torch.mm`` but for the weight gradient, computed as
    ``(grad^T x)^T``: with a short ``in`` (a first layer's 264 inputs against 2048 outputs)
    that shape runs ~12 % faster than autograd's ``x^T grad`` on CPUs (MKL)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x (B, in), weight (n, in, out), bias (n, 1, out)
        n, i, o = weight.shape
        w = weight.transpose(0, 1).reshape(i, n * o)
        with torch.autocast(x.device.type, enabled=False):
            y = torch.mm(x, w) if bias is None else torch.addmm(bias.view(n * o), x, w)
        ctx.save_for_backward(x, w)
        ctx.shape, ctx.has_bias = weight.shape, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):  # grad (B, n * out)
        x, w = ctx.saved_tensors
        n, i, o = ctx.shape
        grad_x = grad_w = grad_b = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_x = torch.mm(grad, w.t())
            if ctx.needs_input_grad[1]:
                grad_w = torch.mm(grad.t(), x).view(n, o, i).transpose(1, 2).contiguous()
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_b = grad.sum(0).view(n, 1, o)
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """``n`` linear maps ``in_dim -> out_dim`` at once, batch first: (B, in) -> (B, n, out) when
    every map reads the same rows (the first layer of a level's experts, the gates): ONE matmul
    of all maps' weights side by side; (B, n, in) -> (B, n, out) when map j reads ``x[:, j]``.

    Parameters stay ``weight`` (n, in, out) and ``bias`` (n, 1, out), whatever the layout of the
    activations, so model files of every format load unchanged."""

    def __init__(self, n: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default initialisation, per map
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        n, _, o = self.weight.shape
        return self.flat(x).view(-1, n, o)

    def flat(
        self, x: torch.Tensor | Sequence[torch.Tensor], with_bias: bool = True
    ) -> torch.Tensor:
        """The output as the (B, n * out) tensor it is computed in (not a view: safe to
        modify in place, which a view is not without autograd copying the whole base).
        ``x``: (B, in) shared, (B, n, in), or a sequence of n (B, in) inputs.
        ``with_bias=False``: the GEMMs alone (a BatchNorm in training mode that follows takes
        the bias into its running mean instead, see :meth:`StackedBatchNorm.flat`)."""
        n = self.weight.shape[0]
        bias = self.bias if with_bias else None
        shared = isinstance(x, torch.Tensor) and x.dim() == 2  # one GEMM for all maps
        if shared or (isinstance(x, torch.Tensor) and n > 1):  # else map j on x[:, j]
            weight, dtype = self.weight, _autocast_dtype(x.device)
            if dtype is not None:  # autocast does not see inside a Function: cast here
                x, weight = x.to(dtype), weight.to(dtype)
                bias = None if bias is None else bias.to(dtype)
            return (_SharedLinear if shared else _PerMapLinear).apply(x, weight, bias)
        # A sequence of inputs, or one map: GEMMs and a cat.
        xs = x.unbind(1) if isinstance(x, torch.Tensor) else x
        biases = self.bias.unbind(0) if bias is not None else [None] * n
        parts = zip(biases, xs, self.weight.unbind(0), strict=True)
        outs = [xj @ w if b is None else torch.addmm(b, xj, w) for b, xj, w in parts]
        return outs[0] if n == 1 else torch.cat(outs, dim=1)


def _world_size() -> int:
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and (biased) variance over the batch axis of (B, C) across every rank's batch,
    with gradients flowing back to each rank's own rows; and the global batch size."""
    from torch.distributed.nn.functional import all_reduce  # autograd-aware

    b, c = x.shape
    count = x.new_full((1, c), float(b))
    sums = all_reduce(torch.cat([x.sum(0, keepdim=True), (x * x).sum(0, keepdim=True), count]))
    total = sums[2]
    mean = sums[0] / total
    var = (sums[1] / total - mean * mean).clamp_min(0.0)
    return mean, var, int(total[0].item())


class StackedBatchNorm(nn.Module):
    """``n`` independent ``BatchNorm1d(dim)`` on (B, n, dim): statistics over the batch axis,
    per map and feature; the same training/eval semantics, momentum and eps as ``BatchNorm1d``.
    Batch-first activations are (B, n * dim) in memory, so one process runs PyTorch's fused
    kernel on them as they are (one BatchNorm1d of n * dim features, no copies).

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

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        return self.flat(x.reshape(x.shape[0], -1), shift).view_as(x)

    def flat(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """(B, n * dim) -> (B, n * dim), a new tensor.

        ``shift`` (n, 1, dim), training mode only: a per-feature constant the caller left out
        of ``x``, the bias of the linear layer before (:func:`fold_bias`). Training-mode
        BatchNorm removes any per-feature constant, so the output is the one of ``x + shift``;
        only the running mean, which eval mode subtracts, takes the shift in, exactly as
        ``BatchNorm1d`` on ``x + shift`` would update it."""
        if shift is not None and not self.training:
            raise ValueError("StackedBatchNorm: a shift is only for training mode")
        if self.training and _world_size() > 1:
            return self._synced(x, shift)
        out = F.batch_norm(
            x,
            self.running_mean.view(-1),  # views: the kernel updates the buffers in place
            self.running_var.view(-1),
            self.weight.view(-1),
            self.bias.view(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        if shift is not None:
            # The kernel made rm <- (1 - m) rm + m mean(x); adding m * shift makes it the
            # update on x + shift. Through .data: autograd saved these buffers (it reads them
            # only for an eval-mode backward) and must not see a new version.
            self.running_mean.data.add_(shift.detach(), alpha=self.momentum)
        return out

    def _synced(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        mean, var, b = _global_moments(x)  # (C,), over every rank's batch
        with torch.no_grad():
            seen_mean = mean.float() if shift is None else mean.float() + shift.view(-1)
            self.running_mean.view(-1).lerp_(seen_mean, self.momentum)
            self.running_var.view(-1).lerp_(var.float() * (b / max(b - 1, 1)), self.momentum)
        scale = self.weight.view(-1) * torch.rsqrt(var + self.eps)  # (C,)
        return torch.addcmul(self.bias.view(-1) - mean * scale, x, scale)


def fold_bias(linear: StackedLinear) -> None:
    """Mark ``linear``'s bias as folded into the BatchNorm that follows it: in training mode
    the GEMM runs without it (``StackedLinear.flat(with_bias=False)``) and the BatchNorm gets
    it as its ``shift``, which saves a pass that writes the bias into the output before the
    GEMM and one that sums the bias gradient. The bias is then frozen (``requires_grad``
    False): its gradient through a training-mode BatchNorm is zero, so it only ever moved by
    rounding noise. Eval mode still adds it, against a running mean that took it in, so
    outputs, parameter counts and model files stay as they were."""
    linear.bias.requires_grad_(False)


class _BF16ReLU(torch.autograd.Function):
    """In-place ReLU of a bfloat16 CPU tensor through its bits: as int16, every negative
    number (and -0, -inf) is below -128, while +0, positives and NaNs of either sign are above
    it, so ``threshold_(x, -128, 0)`` on the int16 view is exactly ``relu`` -- equal for all
    65,536 bf16 bit patterns, NaNs kept -- and runs ~4x faster on CPUs than bf16 ``relu_``,
    which converts every element to float32 and back. The backward is ``relu``'s own."""

    @staticmethod
    def forward(ctx, y):
        torch.threshold_(y.view(torch.int16), -128, 0)
        ctx.mark_dirty(y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, y, 0)


def relu_(y: torch.Tensor) -> torch.Tensor:
    """``F.relu(y, inplace=True)``, through :class:`_BF16ReLU` for bfloat16 on the CPU."""
    if y.dtype == torch.bfloat16 and y.device.type == "cpu":
        return _BF16ReLU.apply(y)
    return F.relu(y, inplace=True)


class StackedMLP(nn.Module):
    """``n`` independent MLPs, batch first: (B, in) shared or (B, n, in) -> (B, n, out). Every
    layer is linear, then BatchNorm when ``batch_norm`` (torch-rechub's ``MLP`` layout), ReLU,
    dropout."""

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
        if self.norms is not None:
            for layer in self.layers:
                fold_bias(layer)
        self.dropout = nn.Dropout(dropout)
        self.out_dim = sizes[-1]

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        fold = self.norms is not None and self.training  # biases into the BatchNorms
        for i, layer in enumerate(self.layers):
            y = layer.flat(x, with_bias=not fold)  # (B, n * d)
            if self.norms is not None:
                y = self.norms[i].flat(y, layer.bias if fold else None)
            # ReLU in place: neither the GEMM nor BatchNorm keeps its output for the backward.
            x = self.dropout(relu_(y)).view(y.shape[0], -1, layer.weight.shape[2])
        return x


class Gates(nn.Module):
    """``n`` softmax gates over ``experts`` each: linear, BatchNorm when ``batch_norm`` (as
    torch-rechub's gates), softmax. (B, in) or (B, n, in) -> (B, n, experts)."""

    def __init__(self, n: int, in_dim: int, experts: int, batch_norm: bool = False):
        super().__init__()
        self.linear = StackedLinear(n, in_dim, experts)
        self.norm = StackedBatchNorm(n, experts) if batch_norm else None
        if self.norm is not None:
            fold_bias(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return torch.softmax(self.linear(x), dim=-1)
        fold = self.training  # the linear's bias into the BatchNorm
        z = self.linear.flat(x, with_bias=not fold)
        z = self.norm.flat(z, self.linear.bias if fold else None)
        return torch.softmax(z.view(z.shape[0], -1, self.linear.weight.shape[2]), dim=-1)


class TaskTowers(nn.Module):
    """One MLP tower per task ending in a logit: (B, K, in), or (B, in) read by every tower,
    -> (B, K)."""

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
        return self.head(self.hidden(x)).squeeze(-1)  # (B, K, 1) -> (B, K)


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
