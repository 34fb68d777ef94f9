"""Each pipeline stage as a plain function: the KFP components call these, and so do the tests.

Artifacts are files or folders at paths the caller gives (KFP's ``artifact.path``); each function
returns the metadata its artifact carries. Heavy imports stay inside the functions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "test_predictions.parquet"
EVALUATION_FILE = "evaluation.json"
BASELINE_BUDGET_OF = "stan"  # baselines are widened to STAN's parameter count


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def training_window(home: Path, logical_date: str, window_days: int) -> tuple[dt.date, dt.date]:
    """The window ending on ``logical_date``, clipped to start after the world's first day."""
    from stan_model.data import raw_store

    end = dt.date.fromisoformat(logical_date)
    days = raw_store.partition_days(home)
    if not days:
        raise FileNotFoundError(f"{raw_store.events_dir(home)}: no raw event partitions")
    if end not in days:
        raise ValueError(
            f"logical date {end} has no raw events; the world has {days[0]} .. {days[-1]}"
        )
    if window_days < 1:
        raise ValueError(f"window_days must be at least 1, got {window_days}")
    start = max(end - dt.timedelta(days=window_days - 1), days[0] + dt.timedelta(days=1))
    return start, end


def build_training_set(home: str, logical_date: str, window_days: int, out_path: str) -> dict:
    """Impressions of the window joined point in time through Feast, validated by GX (raises)."""
    from feature_repo.training import training_set

    start, end = training_window(Path(home), logical_date, window_days)
    result = training_set(Path(home), start, end)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.path, out_path)
    users = len(set(result.table["user_id"].to_pylist()))
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "rows": result.table.num_rows,
        "users": users,
        "tasks": list(result.tasks),
        "user_cold_start": result.user_cold_start,
        "fingerprint": sha256_file(Path(out_path)),
    }


def world_for_training_set(dataset_path: str, home: str, preprocessor=None):
    """The training set at ``dataset_path`` as model data (fitting a preprocessor unless given)."""
    import pyarrow.parquet as pq

    from stan_model.data import raw_store
    from stan_model.data.table_dataset import world_from_table
    from stan_model.schema import read_table

    table = pq.read_table(dataset_path)
    tasks = tuple(c.removeprefix("label_") for c in table.column_names if c.startswith("label_"))
    users = read_table(raw_store.users_path(Path(home)), "users")
    items = read_table(raw_store.items_path(Path(home)), "items")
    return world_from_table(table, tasks, users, items, preprocessor=preprocessor, truth_home=home)


def train_model(
    dataset_path: str, home: str, family: str, seed: int, epochs: int, out_dir: str
) -> dict:
    """Train ``family`` on the training set; PLE and the others get STAN's parameter budget."""
    from stan_model.models import build_model, config_class
    from stan_model.training.distributed import init_distributed
    from stan_model.training.experiment import run_experiment

    data, prep = world_for_training_set(dataset_path, home)
    budget = None
    if family != BASELINE_BUDGET_OF:
        budget = build_model(BASELINE_BUDGET_OF, data.spec, config_class(BASELINE_BUDGET_OF)())
        budget = budget.num_parameters()
    out = Path(out_dir)
    summary = run_experiment(
        home,
        family,
        seed=seed,
        data=data,
        train_overrides={"epochs": epochs},
        out_dir=out,
        budget_of=budget,
        probe=False,
    )
    if init_distributed().is_main:  # under torchrun, rank 0 alone writes the model folder
        prep.save(out)
    return {
        "family": family,
        "seed": seed,
        "num_parameters": summary["num_parameters"],
        "best_epoch": summary["best_epoch"],
        "best_valid_mean_auc": summary["best_valid_mean_auc"],
        "samples_per_s": summary["samples_per_s"],
        "history": summary["history"],
    }


def evaluate_model(model_dir: str, dataset_path: str, home: str, out_dir: str) -> dict:
    """Score the saved model on the test days; write metrics and per-sample test predictions."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from stan_model.data.table_dataset import Preprocessor
    from stan_model.io import load_model
    from stan_model.training.evaluation import evaluate, predict

    loaded = load_model(model_dir)
    data, _ = world_for_training_set(dataset_path, home, Preprocessor.load(model_dir))
    metrics = evaluate(loaded.model, data, "test", probe=data.latent_stage is not None)
    rows = data.splits["test"]
    logits = predict(loaded.model, data.bundle.take(torch.from_numpy(rows)), 16384, False)
    labels = data.bundle.labels[torch.from_numpy(rows)].numpy()
    columns = {
        "user": data.user[rows],
        "day": data.day[rows].astype(np.int64),
        "rule_stage": data.rule_stage[rows].astype(np.int8),
    }
    for k, task in enumerate(data.spec.tasks):
        columns[f"label_{task}"] = labels[:, k].astype(np.int8)
        columns[f"score_{task}"] = logits[:, k].astype(np.float32)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), out / PREDICTIONS_FILE)
    metrics["family"] = loaded.family
    (out / EVALUATION_FILE).write_text(json.dumps(metrics, indent=2, default=float) + "\n")
    return metrics
