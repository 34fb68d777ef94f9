"""Peer check: torch-rechub 0.9.0's PLE, trained and scored exactly like our own models.

:class:`RechubPLE` wraps ``torch_rechub.models.multi_task.PLE`` (its code, unchanged) in the
interface our trainer and evaluation rely on (:class:`stan_model.models.MultiTaskModel`):
``forward(batch, with_loss)`` returning per-task logits and the baselines' loss
(``MultiTaskBCE``), ``init_base_rates``, ``user_representation`` (for the lifecycle probe) and
``num_parameters``. :func:`registered` adds it to the model registry under
``torch_rechub_ple`` for the duration of a ``with`` block, so ``run_experiment`` seeds, builds,
trains (our Adam, batch, epochs, early stopping) and evaluates it through the very code path our
PLE takes.

Matched to our PLE (``stan_model/models/ple.py``): the same tensors (one rechub ``SparseFeature``
per sparse field with its vocabulary size and our embedding size, one ``DenseFeature`` per dense
feature), the same levels, task-specific / shared expert counts, expert widths, tower widths and
dropout; embeddings initialised ``N(0, 0.05)`` as ours (rechub's default is ``N(0, 1e-4)``);
linear layers keep PyTorch's default initialisation, which draws from the same distribution as
ours; task heads start at the training base rate's log-odds as ours do. Each task's
``PredictionLayer`` is built as ``"regression"`` (the identity) so the model returns logits and
the loss is ``BCEWithLogits`` as for every other model.

BatchNorm: rechub's ``MLP`` always puts a ``BatchNorm1d`` after every linear layer -- in the
experts, the towers and even the gates (linear -> BatchNorm -> softmax). Ours does the same when
``batch_norm`` is on (the default for every model since model format 2); before, ours had none,
and the ``torch_rechub_ple_no_bn`` diagnostic (rechub's net with its BatchNorms swapped for
identities) showed that this was the whole of the gap (bench/results/quality.md then).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch_rechub.basic.features import DenseFeature, SparseFeature
from torch_rechub.basic.initializers import RandomNormal
from torch_rechub.models.multi_task import PLE as RechubPLENet

from stan_model.data.tensors import Batch, FeatureSpec
from stan_model.models import MODELS
from stan_model.models.layers import MultiTaskBCE, MultiTaskModel
from stan_model.models.ple import PLEConfig

FAMILY = "torch_rechub_ple"
FAMILY_NO_BN = "torch_rechub_ple_no_bn"  # diagnostic: rechub's PLE with its BatchNorm removed
EMBEDDING_STD = 0.05  # stan_model.models.layers.FeatureInput's initialisation
_DEFAULT = PLEConfig()


@dataclass
class RechubPLEConfig:
    """The fields of :class:`PLEConfig`, same defaults, fed to rechub's PLE."""

    embed_dim: int = _DEFAULT.embed_dim  # every sparse field's embedding size
    n_levels: int = _DEFAULT.n_levels  # rechub ``n_level``
    task_experts: int = _DEFAULT.task_experts  # rechub ``n_expert_specific``
    shared_experts: int = _DEFAULT.shared_experts  # rechub ``n_expert_shared``
    expert_dims: tuple[int, ...] = field(default=_DEFAULT.expert_dims)  # expert_params["dims"]
    tower: tuple[int, ...] = field(default=_DEFAULT.tower)  # tower_params_list[k]["dims"]
    dropout: float = _DEFAULT.dropout  # experts' and towers' dropout

    def widened(self, width: int) -> RechubPLEConfig:
        return replace(self, expert_dims=(width, *self.expert_dims[1:]))

    @classmethod
    def from_ple(cls, cfg: PLEConfig) -> RechubPLEConfig:
        return cls(
            embed_dim=cfg.embed_dim,
            n_levels=cfg.n_levels,
            task_experts=cfg.task_experts,
            shared_experts=cfg.shared_experts,
            expert_dims=tuple(cfg.expert_dims),
            tower=tuple(cfg.tower),
            dropout=cfg.dropout,
        )


class RechubPLE(MultiTaskModel):
    """torch-rechub's PLE behind our model interface (see the module docstring)."""

    def __init__(self, spec: FeatureSpec, config: RechubPLEConfig):
        super().__init__(spec)
        self.config = config
        init = RandomNormal(0.0, EMBEDDING_STD)
        # Fresh feature objects per model: rechub caches each table on its feature object.
        self.sparse_names = [f.name for f in spec.sparse]
        self.dense_names = [f.name for f in spec.dense]
        sparse = [
            SparseFeature(
                f.name, vocab_size=f.vocab_size, embed_dim=config.embed_dim, initializer=init
            )
            for f in spec.sparse
        ]
        dense = [DenseFeature(f.name) for f in spec.dense]
        expert = {"dims": list(config.expert_dims), "dropout": config.dropout, "activation": "relu"}
        tower = {"dims": list(config.tower), "dropout": config.dropout, "activation": "relu"}
        self.net = RechubPLENet(
            sparse + dense,
            ["regression"] * self.n_tasks,  # identity prediction layer: the net returns logits
            n_level=config.n_levels,
            n_expert_specific=config.task_experts,
            n_expert_shared=config.shared_experts,
            expert_params=expert,
            tower_params_list=[dict(tower) for _ in range(self.n_tasks)],
        )
        self.objective = MultiTaskBCE()

    def _inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        x = {name: batch.sparse[:, i] for i, name in enumerate(self.sparse_names)}
        x.update({name: batch.dense[:, j] for j, name in enumerate(self.dense_names)})
        return x

    def logits(self, batch: Batch) -> torch.Tensor:
        return self.net(self._inputs(batch))  # (B, K)

    @torch.no_grad()
    def init_base_rates(self, label_rate: torch.Tensor, pseudo_rate: torch.Tensor) -> None:
        """Each tower's output layer starts at its task's base-rate log-odds, as ours do."""
        logit = torch.logit(label_rate.clamp(1e-4, 1 - 1e-4))
        for k, tower in enumerate(self.net.towers):
            head = [m for m in tower.mlp if isinstance(m, nn.Linear)][-1]
            head.bias.fill_(float(logit[k]))

    def user_representation(self, batch: Batch) -> torch.Tensor:
        """User-field embeddings and user dense features, as :class:`MultiTaskModel` gives."""
        tables = self.net.embedding.embed_dict
        emb = [
            tables[self.sparse_names[i]](batch.sparse[:, i].long()) for i in self.spec.user_sparse
        ]
        return torch.cat([*emb, batch.dense[:, self.spec.user_dense]], dim=1)


class RechubPLENoBatchNorm(RechubPLE):
    """Diagnostic only: the same net with every ``BatchNorm1d`` replaced by the identity after
    construction (BatchNorm draws no random numbers, so the initial weights are unchanged). It
    is rechub's code minus the one part ours cannot match, to tell that part from a bug."""

    def __init__(self, spec: FeatureSpec, config: RechubPLEConfig):
        super().__init__(spec, config)
        for module in self.net.modules():
            if isinstance(module, nn.Sequential):
                for i, layer in enumerate(module):
                    if isinstance(layer, nn.BatchNorm1d):
                        module[i] = nn.Identity()


@contextlib.contextmanager
def registered() -> Iterator[str]:
    """``torch_rechub_ple`` (and the ``torch_rechub_ple_no_bn`` diagnostic) in the model
    registry inside the block; yields the peer's family name."""
    added = {FAMILY: RechubPLE, FAMILY_NO_BN: RechubPLENoBatchNorm}
    before = {name: MODELS.get(name) for name in added}
    MODELS.update({name: (cls, RechubPLEConfig) for name, cls in added.items()})
    try:
        yield FAMILY
    finally:
        for name, old in before.items():
            if old is None:
                MODELS.pop(name, None)
            else:
                MODELS[name] = old
