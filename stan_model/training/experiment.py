"""``run_experiment``: build the dataset, build a model, train it, evaluate it, save it.

The one function the CLI (``stanflow train``), the pipeline and the benchmarks call, so that
every model is trained and scored the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from stan_model.data.dataset import DatasetConfig, WorldData, build_dataset
from stan_model.data.tensors import FeatureSpec
from stan_model.io import config_to_dict, save_model, with_overrides
from stan_model.models import build_model, config_class
from stan_model.training.distributed import init_distributed, resolve_device
from stan_model.training.evaluation import evaluate
from stan_model.training.trainer import TrainConfig, train

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"


def parameter_count(family: str, spec: FeatureSpec, config) -> int:
    return build_model(family, spec, config).num_parameters()


def match_budget(family: str, spec: FeatureSpec, config, target: int) -> object:
    """``config`` widened (its ``widened(width)`` knob) to the parameter count nearest ``target``.

    For fair baselines: give PLE (or MMoE, an MLP) the parameter budget of the STAN it is
    compared with, by making its experts wider or narrower -- never by changing anything else.
    """
    lo, hi = 1, 8192
    while lo < hi:  # smallest width whose count reaches the target
        mid = (lo + hi) // 2
        if parameter_count(family, spec, config.widened(mid)) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = [config.widened(w) for w in (max(1, lo - 1), lo)]
    return min(candidates, key=lambda c: abs(parameter_count(family, spec, c) - target))


def run_experiment(
    home: str | Path,
    model_name: str,
    seed: int = 0,
    overrides: Mapping[str, object] | None = None,
    train_overrides: Mapping[str, object] | None = None,
    dataset_config: DatasetConfig | None = None,
    out_dir: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    data: WorldData | None = None,
    budget_of: int | None = None,
    probe: bool = True,
) -> dict:
    """Train ``model_name`` on the world under ``home`` and return its metrics.

    ``overrides``: model-config fields (``{"backbone.n_levels": 1}``); ``train_overrides``:
    :class:`TrainConfig` fields. ``data``: a prebuilt dataset (benchmarks reuse one across
    models and seeds). ``budget_of``: a parameter count to match by widening the model
    (:func:`match_budget`). ``out_dir``: where the model file and metrics go (nothing else, so
    the folder can be registered as it is). ``checkpoint_dir``: epoch checkpoints; a rerun with
    the same folder resumes.
    """
    tcfg = with_overrides(TrainConfig(seed=seed), train_overrides or {})
    ctx = init_distributed(resolve_device(tcfg.device))  # NCCL on GPUs, gloo on CPUs
    if data is None:
        data = build_dataset(home, dataset_config)
    config = with_overrides(config_class(model_name)(), overrides or {})
    if budget_of is not None:
        config = match_budget(model_name, data.spec, config, budget_of)
    torch.manual_seed(seed)  # initial weights (DDP also broadcasts rank 0's)
    model = build_model(model_name, data.spec, config)
    train_rows = torch.from_numpy(data.splits["train"])
    model.init_base_rates(
        data.bundle.labels[train_rows].mean(0), data.bundle.pseudo[train_rows].mean(0)
    )
    out = Path(out_dir) if out_dir is not None else None
    result = train(model, data, tcfg, checkpoint_dir)
    summary = {
        "model": model_name,
        "seed": seed,
        "world": str(home),
        "num_parameters": model.num_parameters(),
        "config": config_to_dict(config),
        "train_config": dataclasses.asdict(tcfg),
        "dataset_config": dataclasses.asdict(data.config),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "best_valid_mean_auc": result.best_valid_auc,
        "samples_per_s": result.samples_per_s,
        "history": result.history,
        "world_size": ctx.world_size,
    }
    if not ctx.is_main:
        return summary
    summary["valid"] = evaluate(model, data, "valid", probe=False, bf16=tcfg.bf16)
    summary["test"] = evaluate(model, data, "test", probe=probe, bf16=tcfg.bf16)
    if out is not None:
        metadata = {
            "dataset": summary["dataset_config"],
            "train": summary["train_config"],
            "world": str(home),
            "seed": seed,
        }
        save_model(out, model_name, model, metadata)
        (out / METRICS_FILE).write_text(json.dumps(summary, indent=2, default=float) + "\n")
        log.info("model and metrics written to %s", out)
    return summary
