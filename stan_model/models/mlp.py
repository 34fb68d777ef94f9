"""The paper's MLP baselines: single-task MLPs (MLPSingle) and a shared-bottom MLP (MLPShared)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from stan_model.data.tensors import Batch, FeatureSpec
from stan_model.models.layers import (
    FeatureInput,
    MultiTaskBCE,
    MultiTaskModel,
    StackedMLP,
    TaskTowers,
)


@dataclass
class MLPSingleConfig:
    embed_dim: int = 16  # per-field embedding size (the paper uses 128; 16 suits CPU training)
    hidden: tuple[int, ...] = (256, 128, 64)  # each task's own MLP, before its logit
    dropout: float = 0.0  # after every hidden layer; synthetic worlds rarely need it
    batch_norm: bool = True  # BatchNorm after every hidden linear layer (torch-rechub's layout)

    def widened(self, width: int) -> MLPSingleConfig:
        """The capacity knob parameter-budget matching turns: the first hidden width."""
        return replace(self, hidden=(width, *self.hidden[1:]))


class MLPSingle(MultiTaskModel):
    """One independent model per task: its own embedding table and its own MLP; nothing shared.

    The K tables live in one fused table of width K * E (one lookup), the K MLPs in stacked
    weights: K single-task models trained side by side.
    """

    def __init__(self, spec: FeatureSpec, config: MLPSingleConfig):
        super().__init__(spec)
        self.config = config
        k, e = self.n_tasks, config.embed_dim
        self.inputs = FeatureInput(spec, e, copies=k)
        self.towers = TaskTowers(
            k,
            self.inputs.n_fields * e + self.inputs.n_dense,
            config.hidden,
            config.dropout,
            config.batch_norm,
        )
        self.objective = MultiTaskBCE()

    def logits(self, batch: Batch) -> torch.Tensor:
        b, f = batch.sparse.shape
        emb = self.inputs.embed(batch.sparse).view(b, f, self.n_tasks, -1)  # (B, F, K, E)
        emb = emb.transpose(1, 2).reshape(b, self.n_tasks, -1)  # (B, K, F*E)
        dense = batch.dense.unsqueeze(1).expand(-1, self.n_tasks, -1)  # (B, K, D)
        return self.towers(torch.cat([emb, dense], dim=2))  # (B, K)


@dataclass
class MLPSharedConfig:
    embed_dim: int = 16  # per-field embedding size, shared by all tasks
    bottom: tuple[int, ...] = (256, 128)  # the shared-bottom MLP every task reads
    tower: tuple[int, ...] = (64,)  # each task's tower on top of the shared bottom
    dropout: float = 0.0  # after every hidden layer
    batch_norm: bool = True  # BatchNorm after every hidden linear layer (torch-rechub's layout)

    def widened(self, width: int) -> MLPSharedConfig:
        return replace(self, bottom=(width, *self.bottom[1:]))


class MLPShared(MultiTaskModel):
    """Shared-bottom multi-task MLP: one bottom network, one tower per task."""

    def __init__(self, spec: FeatureSpec, config: MLPSharedConfig):
        super().__init__(spec)
        self.config = config
        self.inputs = FeatureInput(spec, config.embed_dim)
        c = config
        self.bottom = StackedMLP(1, self.inputs.out_dim, c.bottom, c.dropout, c.batch_norm)
        self.towers = TaskTowers(
            self.n_tasks, self.bottom.out_dim, c.tower, c.dropout, c.batch_norm
        )
        self.objective = MultiTaskBCE()

    def logits(self, batch: Batch) -> torch.Tensor:
        shared = self.bottom(self.inputs(batch))  # (B, 1, H)
        return self.towers(shared[:, 0])  # every tower reads it: (B, K)
