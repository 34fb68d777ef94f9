"""MMoE (Ma et al., KDD 2018): shared experts, one softmax gate per task, one tower per task."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

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
class MMoEConfig:
    embed_dim: int = 16  # per-field embedding size
    n_experts: int = 6  # shared experts every task's gate mixes
    expert_dims: tuple[int, ...] = (160, 64)  # each expert's MLP; sized near PLE's budget
    tower: tuple[int, ...] = (64,)  # each task's tower
    dropout: float = 0.0  # after every hidden layer
    batch_norm: bool = True  # BatchNorm after every hidden and gate linear layer (torch-rechub)

    def widened(self, width: int) -> MMoEConfig:
        return replace(self, expert_dims=(width, *self.expert_dims[1:]))


class MMoE(MultiTaskModel):
    def __init__(self, spec: FeatureSpec, config: MMoEConfig):
        super().__init__(spec)
        self.config = config
        self.inputs = FeatureInput(spec, config.embed_dim)
        d = self.inputs.out_dim
        c = config
        self.experts = StackedMLP(c.n_experts, d, c.expert_dims, c.dropout, c.batch_norm)
        self.gates = Gates(self.n_tasks, d, c.n_experts, c.batch_norm)
        self.towers = TaskTowers(
            self.n_tasks, self.experts.out_dim, c.tower, c.dropout, c.batch_norm
        )
        self.objective = MultiTaskBCE()

    def logits(self, batch: Batch) -> torch.Tensor:
        x = self.inputs(batch)  # (B, D_in)
        experts = self.experts(x)  # (B, E, H)
        gates = self.gates(x)  # (B, K, E)
        mixed = torch.bmm(gates, experts)  # (B, K, H)
        return self.towers(mixed)  # (B, K)
