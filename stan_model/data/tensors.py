"""What a model sees: the feature vocabulary (:class:`FeatureSpec`) and batches (:class:`Batch`).

A :class:`TensorBundle` holds every sample of a world as a few bulk tensors; a batch is a row
gather from them (``bundle.batch(index)``), never a per-sample Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import torch

Side = Literal["user", "item", "context"]


def vocabulary_codes(values: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """Index of each value in the sorted ``vocabulary``, plus one; 0 for values not in it."""
    pos = np.searchsorted(vocabulary, values)
    pos = np.minimum(pos, len(vocabulary) - 1)
    found = vocabulary[pos] == values if len(vocabulary) else np.zeros(len(values), bool)
    return np.where(found, pos + 1, 0).astype(np.int32)


@dataclass(frozen=True)
class SparseField:
    name: str
    vocab_size: int  # index 0 is reserved for unknown / unseen values
    side: Side


@dataclass(frozen=True)
class DenseField:
    name: str
    side: Side


@dataclass(frozen=True)
class FeatureSpec:
    """The inputs every model gets (identical for all models) and the tasks it predicts."""

    tasks: tuple[str, ...]
    sparse: tuple[SparseField, ...]
    dense: tuple[DenseField, ...]

    @property
    def user_sparse(self) -> list[int]:
        return [i for i, f in enumerate(self.sparse) if f.side == "user"]

    @property
    def user_dense(self) -> list[int]:
        return [i for i, f in enumerate(self.dense) if f.side == "user"]

    def to_dict(self) -> dict:
        return {
            "tasks": list(self.tasks),
            "sparse": [[f.name, f.vocab_size, f.side] for f in self.sparse],
            "dense": [[f.name, f.side] for f in self.dense],
        }

    @classmethod
    def from_dict(cls, raw: dict) -> FeatureSpec:
        return cls(
            tasks=tuple(raw["tasks"]),
            sparse=tuple(SparseField(str(n), int(v), s) for n, v, s in raw["sparse"]),
            dense=tuple(DenseField(str(n), s) for n, s in raw["dense"]),
        )


@dataclass
class Batch:
    """B samples. Labels and pseudo-labels are per task, in ``FeatureSpec.tasks`` order."""

    sparse: torch.Tensor  # (B, F) int32 per-field indices (0 = unknown)
    dense: torch.Tensor  # (B, D) float32 standardised dense features
    labels: torch.Tensor  # (B, K) float32 0/1
    pseudo: torch.Tensor  # (B, K) float32 the user's historical rate per task (stage-loss target)
    history: torch.Tensor  # (B,) float32 the user's position in its own history: 1 + earlier rows

    def __len__(self) -> int:
        return self.labels.shape[0]

    def to(self, device: torch.device) -> Batch:
        if self.labels.device == device:
            return self
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))


@dataclass
class TensorBundle:
    """Bulk tensors of N samples, row-aligned; ``batch(index)`` gathers rows."""

    sparse: torch.Tensor
    dense: torch.Tensor
    labels: torch.Tensor
    pseudo: torch.Tensor
    history: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, index: torch.Tensor | slice) -> Batch:
        return Batch(
            sparse=self.sparse[index],
            dense=self.dense[index],
            labels=self.labels[index],
            pseudo=self.pseudo[index],
            history=self.history[index],
        )

    def take(self, index: torch.Tensor) -> TensorBundle:
        """A new bundle holding only the rows ``index`` (a copy: a rank's shard, a split)."""
        return TensorBundle(
            sparse=self.sparse[index],
            dense=self.dense[index],
            labels=self.labels[index],
            pseudo=self.pseudo[index],
            history=self.history[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def to(self, device: torch.device) -> TensorBundle:
        """The same rows on ``device`` (a rank's shard moves to its GPU once, not per batch)."""
        if self.labels.device == device:
            return self
        names = [f.name for f in fields(self) if f.name != "extras"]
        moved = {name: getattr(self, name).to(device) for name in names}
        return TensorBundle(**moved, extras={k: v.to(device) for k, v in self.extras.items()})
