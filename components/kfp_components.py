"""Kubeflow Pipelines v2 lightweight components: typed artifacts around :mod:`components.steps`.

Each body imports the project inside (the KFP executor runs only the function's source) and calls
one plain function. Locally they run in this environment (``SubprocessRunner(use_venv=False)``);
on a cluster, on the project's image (``STANFLOW_IMAGE``), which already holds kfp and stanflow.
"""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from stanflow.settings import Settings

IMAGE = Settings.from_env().component_image
component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def build_training_set(
    home: str, logical_date: str, window_days: int, training_set: Output[Dataset]
):
    """Impressions of the window joined point in time through Feast; validated by GX."""
    import time

    from components.steps import build_training_set as step

    started = time.perf_counter()
    meta = step(home, logical_date, window_days, training_set.path)
    training_set.metadata["seconds"] = round(time.perf_counter() - started, 3)
    training_set.metadata.update({k: v for k, v in meta.items() if k != "tasks"})
    training_set.metadata["tasks"] = ",".join(meta["tasks"])


@component
def train_model(
    home: str,
    family: str,
    seed: int,
    epochs: int,
    training_set: Input[Dataset],
    model: Output[Model],
    train_metrics: Output[Metrics],
    trainjob_workers: int = 0,
):
    """Train one model family on the training set (same data and budget for every family):
    here, or as a Kubeflow PyTorchJob on 1 + ``trainjob_workers`` pods when that is above 0."""
    import time

    from components.steps import train_model as step

    started = time.perf_counter()
    if trainjob_workers > 0:
        from components.trainjob import train_with_pytorchjob
        from stanflow.settings import Settings

        settings = Settings.from_env()
        meta = train_with_pytorchjob(
            training_set.path,
            home,
            family,
            seed,
            epochs,
            model.path,
            trainjob_workers,
            namespace=settings.trainjob_namespace,
            pvc=settings.home_pvc,
            image=settings.component_image,
        )
    else:
        meta = step(training_set.path, home, family, seed, epochs, model.path)
    model.metadata["seconds"] = round(time.perf_counter() - started, 3)
    model.metadata.update(
        {
            "model_family": family,
            "num_parameters": meta["num_parameters"],
            "data_fingerprint": training_set.metadata.get("fingerprint", ""),
        }
    )
    train_metrics.log_metric("best_valid_mean_auc", meta["best_valid_mean_auc"])
    train_metrics.log_metric("best_epoch", meta["best_epoch"])
    train_metrics.log_metric("samples_per_s", meta["samples_per_s"])
    train_metrics.log_metric("num_parameters", meta["num_parameters"])


@component
def evaluate_model(
    home: str,
    model: Input[Model],
    training_set: Input[Dataset],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
    roc: Output[ClassificationMetrics],
):
    """Per-task AUC and NDCG@5 on the test days, per lifecycle stage, and test predictions."""
    import time

    import numpy as np
    import pyarrow.parquet as pq

    from components.steps import PREDICTIONS_FILE
    from components.steps import evaluate_model as step

    started = time.perf_counter()
    result = step(model.path, training_set.path, home, evaluation.path)
    evaluation.metadata["seconds"] = round(time.perf_counter() - started, 3)
    for task, value in result["auc"].items():
        metrics.log_metric(f"auc_{task}", value)
        metrics.log_metric(f"ndcg5_{task}", result["ndcg@5"][task])
    first = next(iter(result["auc"]))
    table = pq.read_table(f"{evaluation.path}/{PREDICTIONS_FILE}")
    y, s = table[f"label_{first}"].to_numpy(), table[f"score_{first}"].to_numpy()
    thresholds = np.quantile(s, np.linspace(0, 1, 21))[::-1]
    pos, neg = max(int(y.sum()), 1), max(int((1 - y).sum()), 1)
    roc.log_roc_curve(
        [float(((s >= t) & (y == 0)).sum() / neg) for t in thresholds],
        [float(((s >= t) & (y == 1)).sum() / pos) for t in thresholds],
        [float(t) for t in thresholds],
    )
    evaluation.metadata["model_family"] = result["family"]


@component
def gate(
    home: str,
    registry_uri: str,
    policy_path: str,
    force_promote: bool,
    override_reason: str,
    training_set: Input[Dataset],
    stan_model: Input[Model],
    stan_evaluation: Input[Dataset],
    ple_evaluation: Input[Dataset],
    decision: Output[Dataset],
) -> str:
    """Compare STAN with PLE and the champion; register STAN with the decision; return it."""
    import json
    import time

    from components.gate_step import gate_and_register

    started = time.perf_counter()
    record = gate_and_register(
        stan_model.path,
        stan_evaluation.path,
        ple_evaluation.path,
        training_set.path,
        home,
        registry_uri,
        training_set.metadata.get("fingerprint", ""),
        policy_path,
        force_promote,
        override_reason,
        run_id=decision.path.split("/")[-3],
    )
    with open(decision.path, "w") as fh:
        json.dump(record, fh, indent=2)
    decision.metadata.update(
        {
            "decision": record["decision"],
            "version": record["version"],
            "reused_version": record["reused_version"],
            "seconds": round(time.perf_counter() - started, 3),
        }
    )
    return record["decision"]


@component
def promote(home: str, registry_uri: str, override_reason: str, decision: Input[Dataset]) -> str:
    """Make the gated version the champion (runs only when the gate said promote)."""
    from components.gate_step import promote as step

    version = decision.metadata["version"]
    reason = override_reason or "gate passed: STAN beat PLE on the configured metrics"
    # A reused version keeps the verdict of the run that registered it; this run's gate passed.
    force = bool(override_reason) or bool(decision.metadata.get("reused_version"))
    return step(registry_uri, home, version, reason, force=force)["champion_uri"]
