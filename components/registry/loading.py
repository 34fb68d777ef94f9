"""Loading a registered model's weights: fetched, verified, read with safetensors (no pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.registry.errors import RegistryError
from components.registry.registry import ModelRegistry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LoadedModel:
    """A fetched version: its files on disk, config, and the tensors of every safetensors file."""

    version: str
    path: Path
    config: dict[str, Any]
    tensors: dict[str, dict[str, torch.Tensor]]  # file name -> tensor name -> tensor


def load_version(
    registry: ModelRegistry, version: str | None, dest: Path, *, device: str = "cpu"
) -> LoadedModel:
    """Fetch ``version`` (``None``: the champion) to ``dest`` and load it without unpickling."""
    from safetensors.torch import load_file

    if version is None:
        version = registry.champion()
        if version is None:
            raise RegistryError(f"registry {registry.uri} has no champion to load yet")
    path = registry.fetch(version, dest)
    config_path = path / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    tensors = {
        p.relative_to(path).as_posix(): load_file(p, device=device)
        for p in sorted(path.rglob("*.safetensors"))
    }
    return LoadedModel(version=version, path=path, config=config, tensors=tensors)
