"""Model files: ``model.safetensors`` (weights) + ``model.json`` (what to rebuild them into).

``model.json`` holds the model family, its config dataclass as plain JSON, the feature vocabulary
(:class:`~stan_model.data.tensors.FeatureSpec`, tasks included) and free-form metadata (the
dataset config, metrics). Loading builds the model from the JSON and fills it from safetensors:
nothing is ever unpickled.

Configs travel as JSON and as ``key=value`` overrides (dotted keys reach nested configs:
``backbone.n_levels=1``); both are checked against the dataclass's fields, never splatted.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from stan_model.data.tensors import FeatureSpec
from stan_model.models import MultiTaskModel, build_model, config_class

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT_VERSION = 2
# Format 1 predates the ``batch_norm`` config field (BatchNorm in the hidden layers, default on
# since format 2): its models had none, so loading one fills ``batch_norm = False`` in.
READABLE_FORMATS = (1, 2)


def _upgrade_v1(raw: Mapping) -> dict:
    """A format-1 config dict with ``batch_norm: False`` wherever a config had no such key."""
    out = {k: _upgrade_v1(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
    if "embed_dim" in out:  # a network config (STAN's own sits around its ``backbone``)
        out.setdefault("batch_norm", False)
    return out


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def _coerce(value, like, where: str):
    """``value`` converted to the type of the current field value ``like``."""
    if dataclasses.is_dataclass(like):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return config_from_dict(type(like), value, where)
    if isinstance(like, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, bool | int):
            return bool(value)
    elif isinstance(like, int) and isinstance(value, int | str) and not isinstance(value, bool):
        return int(value)
    elif isinstance(like, float) and isinstance(value, int | float | str):
        return float(value)
    elif isinstance(like, tuple) and isinstance(value, list | tuple):
        return tuple(int(v) if isinstance(v, int | str) else v for v in value)
    elif isinstance(like, str) and isinstance(value, str):
        return value
    raise ValueError(f"{where}: cannot use {value!r} (expected {type(like).__name__})")


def _set_field(config, key: str, value, where: str) -> None:
    names = {f.name for f in dataclasses.fields(config)}
    if key not in names:
        raise ValueError(f"{where}: unknown field '{key}'; fields: {', '.join(sorted(names))}")
    setattr(config, key, _coerce(value, getattr(config, key), where))


def config_from_dict(cls: type, raw: Mapping, where: str = "config"):
    """A ``cls`` instance from JSON-like data: defaults for absent keys, unknown keys refused."""
    config = cls()
    for key, value in raw.items():
        _set_field(config, key, value, f"{where}.{key}")
    if hasattr(config, "__post_init__"):
        config.__post_init__()
    return config


def with_overrides(config, overrides: Mapping[str, object]):
    """A copy of ``config`` with ``{"field": value, "nested.field": value}`` applied."""
    config = copy.deepcopy(config)
    for dotted, value in overrides.items():
        *path, key = dotted.split(".")
        target = config
        for part in path:
            target = getattr(target, part, None)
            if not dataclasses.is_dataclass(target):
                raise ValueError(f"override '{dotted}': '{part}' is not a nested config")
        _set_field(target, key, value, f"override '{dotted}'")
    if hasattr(config, "__post_init__"):
        config.__post_init__()
    return config


@dataclass
class LoadedModel:
    model: MultiTaskModel
    family: str
    config: object
    spec: FeatureSpec
    metadata: dict


def save_model(
    directory: str | Path, family: str, model: MultiTaskModel, metadata: dict | None = None
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``; return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(directory / MODEL_FILE), metadata={"family": family})
    info = {
        "format": FORMAT_VERSION,
        "family": family,
        "config": config_to_dict(model.config),
        "spec": model.spec.to_dict(),
        "num_parameters": model.num_parameters(),
        "metadata": metadata or {},
    }
    (directory / CONFIG_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return directory


def load_model(directory: str | Path) -> LoadedModel:
    """Rebuild the model saved in ``directory`` (JSON + safetensors; no unpickling)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model here (expected {CONFIG_FILE} + {MODEL_FILE})")
    info = json.loads(path.read_text())
    if info.get("format") not in READABLE_FORMATS:
        raise ValueError(
            f"{path}: model format {info.get('format')}; this stanflow reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
        )
    family = info["family"]
    raw = info["config"] if info["format"] == FORMAT_VERSION else _upgrade_v1(info["config"])
    config = config_from_dict(config_class(family), raw, f"{path}: config")
    spec = FeatureSpec.from_dict(info["spec"])
    model = build_model(family, spec, config)
    model.load_state_dict(load_file(str(directory / MODEL_FILE)), strict=True)
    model.eval()
    return LoadedModel(model, family, config, spec, info.get("metadata", {}))
