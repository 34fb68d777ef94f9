"""PLE (Tang et al., RecSys 2020): stacked CGC levels of task-specific and shared experts.

Per level, every task has ``task_experts`` experts of its own and all tasks share
``shared_experts``; task k's gate is ``softmax(W_k x_k)`` over its own and the shared experts; a
shared gate over all experts feeds the next level's shared input (not on the last level). All
experts of a level are one :class:`StackedMLP` (on the first level, whose experts all read the
same input, their first layer is one matmul), each gate a slice of one :class:`Gates` (linear,
BatchNorm, softmax). Activations are batch first: (B, experts or tasks, width).

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
        """x: (B, in) on the first level, else (B, K+1, in). Returns (B, K, H) on the last level,
        else (B, K+1, H). ``context``: (B, K, C) extra task-gate input, or None."""
        k = self.n_tasks
        if x.dim() == 2:  # every expert and gate reads x: their first layers are one GEMM each
            expert_in, task_in, shared_in = x, x, x
        else:
            expert_in, task_in, shared_in = x[:, self.expert_group], x[:, :k], x[:, k]
        experts = self.experts(expert_in)  # (B, E, H)
        if context is not None:
            if task_in.dim() == 2:
                task_in = task_in.unsqueeze(1).expand(-1, k, -1)
            task_in = torch.cat([task_in, context], dim=2)  # (B, K, in + C)
        own = self.task_gates(task_in)  # (B, K, t+s)
        # Scatter each task's gate onto the expert axis (zero on other tasks' experts), then
        # mix: per sample a (K, E) @ (E, H) product, one batched matmul.
        index = self.task_selection.expand(own.shape[0], -1, -1)  # (B, K, t+s)
        gates = own.new_zeros(own.shape[0], k, self.n_experts).scatter(2, index, own)
        task_out = torch.bmm(gates, experts)  # (B, K, H)
        if self.shared_gate is None:
            return task_out
        shared = self.shared_gate(shared_in)  # (B, 1, E)
        return torch.cat([task_out, torch.bmm(shared, experts)], dim=1)  # (B, K+1, H)


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
            x = torch.cat([x, tower_context], dim=2)  # (B, K, H + C)
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
