"""PLE (Tang et al., RecSys 2020): stacked CGC levels of task-specific and shared experts.

Per level, every task has ``task_experts`` experts of its own and all tasks share
``shared_experts``; task k's gate is ``softmax(W_k x_k)`` over its own and the shared experts; a
shared gate over all experts feeds the next level's shared input (not on the last level). All
experts of a level are one :class:`StackedMLP` (one batched matmul per layer), each gate a slice
of one :class:`Gates` (linear, BatchNorm, softmax).

:class:`PLEBackbone` is the levels plus the towers; STAN reuses it unchanged, optionally adding a
per-task context vector to the task gates' and towers' inputs (``gate_context`` /
``tower_context``), which plain PLE leaves at zero width.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from stan_model.data.tensors import Batch, FeatureSpec
from stan_model.models.layers import (
    FeatureInput,
    Gates,
    MultiTaskBCE,
    MultiTaskModel,
    StackedMLP,
    TaskTowers,
)


@dataclass
class PLEConfig:
    embed_dim: int = 16  # per-field embedding size (paper 128; 16 suits CPU and our worlds)
    n_levels: int = 2  # stacked CGC levels (1 = a single CGC)
    task_experts: int = 2  # experts of each task, per level
    shared_experts: int = 2  # experts shared by all tasks, per level
    # Each expert's MLP. The first width is set so that PLE's parameter count matches STAN's at
    # the defaults (STAN's backbone uses 128): PLE gets the budget STAN spends on its branch.
    expert_dims: tuple[int, ...] = (136, 64)
    tower: tuple[int, ...] = (64,)  # each task's tower before its logit
    dropout: float = 0.0  # after every hidden layer
    batch_norm: bool = True  # BatchNorm after every hidden and gate linear layer (torch-rechub)

    def widened(self, width: int) -> PLEConfig:
        """The capacity knob parameter-budget matching turns: the experts' first width."""
        return replace(self, expert_dims=(width, *self.expert_dims[1:]))


class CGCLevel(nn.Module):
    """One CGC level. Inputs per group (K task groups, then the shared group)."""

    def __init__(
        self, n_tasks: int, in_dim: int, cfg: PLEConfig, last: bool, gate_context: int = 0
    ):
        super().__init__()
        k, t, s = n_tasks, cfg.task_experts, cfg.shared_experts
        self.n_tasks, self.last = k, last
        group = [g for g in range(k) for _ in range(t)] + [k] * s  # expert -> its input group
        own = torch.tensor(
            [[g * t + i for i in range(t)] + [k * t + j for j in range(s)] for g in range(k)]
        )  # (K, t+s) experts each task's gate mixes
        self.register_buffer("expert_group", torch.tensor(group), persistent=False)
        self.register_buffer("task_selection", own, persistent=False)
        self.n_experts = k * t + s
        bn = cfg.batch_norm
        self.experts = StackedMLP(self.n_experts, in_dim, cfg.expert_dims, cfg.dropout, bn)
        self.task_gates = Gates(k, in_dim + gate_context, t + s, bn)
        self.shared_gate = None if last else Gates(1, in_dim, self.n_experts, bn)
        self.out_dim = self.experts.out_dim

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in) on the first level, else (K+1, B, in). Returns (K, B, H) on the last level,
        else (K+1, B, H). ``context``: (K, B, C) extra task-gate input, or None."""
        if x.dim() == 2:
            expert_in, task_in, shared_in = x, x.expand(self.n_tasks, -1, -1), x
        else:
            expert_in, task_in, shared_in = x[self.expert_group], x[: self.n_tasks], x[-1]
        experts = self.experts(expert_in)  # (E, B, H)
        if context is not None:
            task_in = torch.cat([task_in, context], dim=2)  # (K, B, in + C)
        own = self.task_gates(task_in)  # (K, B, t+s)
        # Scatter each task's gate onto the expert axis (zero on other tasks' experts).
        index = self.task_selection[:, None, :].expand(-1, own.shape[1], -1)  # (K, B, t+s)
        gates = own.new_zeros(own.shape[0], own.shape[1], self.n_experts).scatter(2, index, own)
        task_out = torch.einsum("kbe,ebh->kbh", gates, experts)  # (K, B, H)
        if self.shared_gate is None:
            return task_out
        shared = self.shared_gate(shared_in)[0]  # (B, E)
        shared_out = torch.einsum("be,ebh->bh", shared, experts)  # (B, H)
        return torch.cat([task_out, shared_out[None]], dim=0)  # (K+1, B, H)


class PLEBackbone(nn.Module):
    """CGC levels and per-task towers: (B, in) -> (B, K) logits."""

    def __init__(
        self,
        n_tasks: int,
        in_dim: int,
        cfg: PLEConfig,
        gate_context: int = 0,
        tower_context: int = 0,
    ):
        super().__init__()
        levels, dim = [], in_dim
        for level in range(cfg.n_levels):
            levels.append(CGCLevel(n_tasks, dim, cfg, level == cfg.n_levels - 1, gate_context))
            dim = levels[-1].out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = TaskTowers(
            n_tasks, dim + tower_context, cfg.tower, cfg.dropout, cfg.batch_norm
        )

    def forward(
        self,
        x: torch.Tensor,
        gate_context: torch.Tensor | None = None,
        tower_context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        for level in self.levels:
            x = level(x, gate_context)
        if tower_context is not None:
            x = torch.cat([x, tower_context], dim=2)  # (K, B, H + C)
        return self.towers(x)  # (B, K)


class PLE(MultiTaskModel):
    def __init__(self, spec: FeatureSpec, config: PLEConfig):
        super().__init__(spec)
        self.config = config
        self.inputs = FeatureInput(spec, config.embed_dim)
        self.backbone = PLEBackbone(self.n_tasks, self.inputs.out_dim, config)
        self.objective = MultiTaskBCE()

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.backbone(self.inputs(batch))
