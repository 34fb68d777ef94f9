"""Epoch checkpoints without pickles: weights and optimizer tensors as safetensors, the rest JSON.

A checkpoint folder holds ``last.safetensors`` (weights after the latest epoch),
``best.safetensors`` (weights of the best validation epoch), ``optimizer.safetensors`` (Adam's
moment tensors) and ``state.json`` (optimizer hyper-parameters, epoch counters, history). Each file
is replaced atomically and ``state.json`` is written last, so a run killed mid-save resumes from
the previous complete epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

LAST, BEST, OPTIMIZER, STATE = (
    "last.safetensors",
    "best.safetensors",
    "optimizer.safetensors",
    "state.json",
)


def _replace(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    _replace(tmp, path)


def save_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: dict
) -> None:
    """Weights, optimizer and ``progress`` (JSON-able counters and history) after an epoch."""
    folder.mkdir(parents=True, exist_ok=True)
    opt = optimizer.state_dict()
    tensors = {
        f"{index}.{name}": value
        for index, per_param in opt["state"].items()
        for name, value in per_param.items()
    }
    save_tensors(tensors, folder / OPTIMIZER)
    save_tensors(model.state_dict(), folder / LAST)
    state = {"param_groups": opt["param_groups"], "progress": progress}
    tmp = folder / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    _replace(tmp, folder / STATE)


def load_checkpoint(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> dict | None:
    """Restore weights and optimizer from ``folder``; return its progress (None: no checkpoint)."""
    if not (folder / STATE).exists():
        return None
    state = json.loads((folder / STATE).read_text())
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in load_file(str(folder / OPTIMIZER)).items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    except ValueError as exc:  # another parameter set: not this model's run
        raise ValueError(
            f"{folder}: the checkpoint's optimizer holds another set of trainable parameters "
            f"({exc}); it was written by another model configuration or stanflow version. "
            "Start over with `stanflow train --fresh` or delete the folder."
        ) from exc
    model.load_state_dict(load_file(str(folder / LAST)))
    return state["progress"]


def load_best(folder: Path) -> dict[str, torch.Tensor] | None:
    path = folder / BEST
    return load_file(str(path)) if path.exists() else None
