"""The architectures: MLPSingle, MLPShared, MMoE, PLE and STAN, one file each.

Every model takes a :class:`~stan_model.data.tensors.FeatureSpec` and its typed config, and
implements :class:`~stan_model.models.layers.MultiTaskModel`: ``forward(batch, with_loss)``
returns per-task logits (and the model's own loss), ``user_representation(batch)`` the vector the
lifecycle probe reads.
"""

from __future__ import annotations

from stan_model.data.tensors import FeatureSpec
from stan_model.models.layers import MultiTaskModel, Output
from stan_model.models.mlp import MLPShared, MLPSharedConfig, MLPSingle, MLPSingleConfig
from stan_model.models.mmoe import MMoE, MMoEConfig
from stan_model.models.ple import PLE, PLEConfig
from stan_model.models.stan import STAN, STANConfig

# family name -> (model class, config class); the names the CLI and model files use.
MODELS: dict[str, tuple[type[MultiTaskModel], type]] = {
    "mlp_single": (MLPSingle, MLPSingleConfig),
    "mlp_shared": (MLPShared, MLPSharedConfig),
    "mmoe": (MMoE, MMoEConfig),
    "ple": (PLE, PLEConfig),
    "stan": (STAN, STANConfig),
}


def config_class(family: str) -> type:
    if family not in MODELS:
        raise ValueError(f"unknown model '{family}'; choose one of {', '.join(MODELS)}")
    return MODELS[family][1]


def build_model(family: str, spec: FeatureSpec, config=None) -> MultiTaskModel:
    """A fresh model of ``family`` (default config when ``config`` is None)."""
    cfg = config if config is not None else config_class(family)()
    return MODELS[family][0](spec, cfg)


__all__ = [
    "MODELS",
    "MultiTaskModel",
    "Output",
    "build_model",
    "config_class",
    "MLPSingle",
    "MLPSingleConfig",
    "MLPShared",
    "MLPSharedConfig",
    "MMoE",
    "MMoEConfig",
    "PLE",
    "PLEConfig",
    "STAN",
    "STANConfig",
]
