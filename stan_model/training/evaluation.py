"""Score a model on one split: per-task AUC, NDCG@k over (user, day) lists, log loss, per-stage
AUC (rule-based stage; latent stage when the world is simulated) and the lifecycle probe."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from stan_model import metrics
from stan_model.data.dataset import WorldData
from stan_model.data.tensors import TensorBundle
from stan_model.models import MultiTaskModel
from stan_model.schema import LIFECYCLE_STAGES


def _autocast(bf16: bool, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _device(model: MultiTaskModel) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(
    model: MultiTaskModel, bundle: TensorBundle, batch_size: int = 16384, bf16: bool = False
) -> np.ndarray:
    """Logits (N, K) for every row of ``bundle``, in eval mode (no dropout, no sampling)."""
    was_training, device = model.training, _device(model)
    model.eval()
    out = []
    with _autocast(bf16, device):
        for start in range(0, len(bundle), batch_size):
            batch = bundle.batch(slice(start, start + batch_size)).to(device)
            out.append(model(batch).logits.float().cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.n_tasks), np.float32)


@torch.no_grad()
def user_representations(
    model: MultiTaskModel, bundle: TensorBundle, batch_size: int = 16384
) -> np.ndarray:
    was_training, device = model.training, _device(model)
    model.eval()
    out = [
        model.user_representation(bundle.batch(slice(s, s + batch_size)).to(device)).float().cpu()
        for s in range(0, len(bundle), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out).numpy()


def task_scores(logits: np.ndarray, labels: np.ndarray, tasks: tuple[str, ...]) -> dict:
    """Per-task AUC and log loss, their means: what early stopping reads."""
    x, y = torch.from_numpy(logits), torch.from_numpy(labels)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none").mean(0).numpy()
    aucs = {t: metrics.auc(labels[:, k], logits[:, k]) for k, t in enumerate(tasks)}
    return {
        "auc": aucs,
        "logloss": {t: float(loss[k]) for k, t in enumerate(tasks)},
        "mean_auc": float(np.nanmean(list(aucs.values()))),
        "loss": float(loss.sum()),
    }


def evaluate(
    model: MultiTaskModel,
    data: WorldData,
    split: str = "test",
    k: int = 5,
    probe: bool = True,
    bf16: bool = False,
    batch_size: int = 16384,
) -> dict:
    """Every metric of ``model`` on ``split`` of ``data`` (see :mod:`stan_model.metrics`)."""
    rows = data.splits[split]
    bundle = data.bundle.take(torch.from_numpy(rows))
    logits = predict(model, bundle, batch_size, bf16)
    labels = bundle.labels.numpy()
    tasks = data.spec.tasks
    out = task_scores(logits, labels, tasks)
    lists = data.user[rows] * len(data.days) + data.day[rows]  # NDCG lists: one per (user, day)
    out[f"ndcg@{k}"], out["ndcg_lists"] = {}, {}
    for j, t in enumerate(tasks):
        value, n_lists = metrics.ndcg_at_k(labels[:, j], logits[:, j], lists, k)
        out[f"ndcg@{k}"][t] = value
        out["ndcg_lists"][t] = n_lists  # (user, day) lists with a positive: NDCG's sample size
    out["n_samples"] = int(len(rows))
    stage_sets = {"rule_stage": data.rule_stage[rows]}
    if data.latent_stage is not None:
        stage_sets["latent_stage"] = data.latent_stage[rows]
    for name, stage in stage_sets.items():
        out[f"auc_by_{name}"] = {
            t: metrics.auc_by_stage(labels[:, j], logits[:, j], stage, LIFECYCLE_STAGES)
            for j, t in enumerate(tasks)
        }
    if probe and data.latent_stage is not None:
        out["probe"] = stage_probe(model, data, rows, batch_size)
    return out


def stage_probe(
    model: MultiTaskModel, data: WorldData, rows: np.ndarray, batch_size: int = 16384
) -> dict:
    """Linear probe from the model's user representation to the latent stage: one row per
    (user, day) (its first sample that day) whose latent stage is a lifecycle stage."""
    latent = data.latent_stage[rows]
    keys = data.user[rows] * len(data.days) + data.day[rows]
    _, first = np.unique(keys, return_index=True)
    first = first[(latent[first] >= 0) & (latent[first] < len(LIFECYCLE_STAGES))]
    if len(first) < 20:
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan"), "n": len(first)}
    picked = rows[first]
    reps = user_representations(model, data.bundle.take(torch.from_numpy(picked)), batch_size)
    result = metrics.linear_probe(
        reps, latent[first].astype(np.int64), data.user[picked], len(LIFECYCLE_STAGES)
    )
    return {
        "accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy,
        "n": result.n_train + result.n_test,
    }
