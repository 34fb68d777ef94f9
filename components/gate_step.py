"""The gate and promotion stages of the pipeline (plain functions; KFP wraps them).

``gate_and_register`` compares STAN with PLE on the same test rows (and the current champion,
re-scored on those rows with its own saved preprocessor), adds paired user-bootstrap intervals of
every lift, decides by the policy, and registers STAN's model with the decision and its reasons,
whatever the decision. ``promote`` then switches the champion (only run when the gate said so).
A model identical to one already registered (a rerun of the same day) reuses that version, and
promoting the current champion again is a no-op, so a rerun leaves the registry and the champion
as they were.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from components.steps import EVALUATION_FILE, PREDICTIONS_FILE, evaluate_model

log = logging.getLogger(__name__)
STAGES = ("new", "wander", "stick", "loyal")


def open_registry(registry_uri: str, home: str):
    """The registry at ``registry_uri``; empty means the data home's own (``<home>/registry``)."""
    from components.registry.factory import storage_from_uri
    from components.registry.registry import ModelRegistry
    from stanflow.settings import Settings

    settings = Settings.from_env()
    return ModelRegistry(
        storage_from_uri(
            registry_uri or str(Path(home) / "registry"),
            s3_endpoint_url=settings.s3_endpoint_url,
            s3_region=settings.s3_region,
        )
    )


def model_metrics(eval_dir: str | Path):
    """:class:`~components.gate.ModelMetrics` from an evaluation folder."""
    import pyarrow.parquet as pq

    from components.gate import ModelMetrics

    ev = json.loads((Path(eval_dir) / EVALUATION_FILE).read_text())
    tasks = {t: {"auc": ev["auc"][t], "ndcg@5": ev["ndcg@5"][t]} for t in ev["auc"]}
    by_stage = {
        s: {t: {"auc": ev["auc_by_rule_stage"][t][s]} for t in tasks}
        for s in STAGES
        if all(np.isfinite(ev["auc_by_rule_stage"][t][s]) for t in tasks)
    }
    stage = pq.read_table(Path(eval_dir) / PREDICTIONS_FILE, columns=["rule_stage"])
    counts = np.bincount(stage["rule_stage"].to_numpy().astype(np.int64) + 1, minlength=6)
    # rule_stage -1 (unscored) .. 3 (loyal) shifted by one: stage i is counted at i + 1.
    return ModelMetrics(tasks, by_stage, {s: int(counts[i + 1]) for i, s in enumerate(STAGES)})


def lift_intervals(
    cand_dir: str | Path, base_dir: str | Path, confidence: float, resamples: int = 200
) -> dict[str, dict[str, tuple[float, float]]]:
    """Paired user-bootstrap interval of the AUC and NDCG@5 lift of every task."""
    import pyarrow.parquet as pq

    from components.gate.bootstrap import ndcg_per_list, paired_auc_lift, paired_mean_lift

    cand = pq.read_table(Path(cand_dir) / PREDICTIONS_FILE)
    base = pq.read_table(Path(base_dir) / PREDICTIONS_FILE)
    users = cand["user"].to_numpy()
    if cand.num_rows != base.num_rows or not np.array_equal(users, base["user"].to_numpy()):
        raise ValueError("gate: candidate and baseline were not scored on the same test rows")
    lists = users * 10_000 + cand["day"].to_numpy()
    out = {}
    for name in cand.column_names:
        if not name.startswith("label_"):
            continue
        task = name.removeprefix("label_")
        y = cand[name].to_numpy()
        a, b = cand[f"score_{task}"].to_numpy(), base[f"score_{task}"].to_numpy()
        auc = paired_auc_lift(users, y, a, b, resamples, confidence)
        ndcg_a, ids = ndcg_per_list(lists, y, a)
        ndcg_b, _ = ndcg_per_list(lists, y, b)
        ndcg = paired_mean_lift(ids // 10_000, ndcg_a, ndcg_b, resamples, confidence)
        out[task] = {"auc": (auc.low, auc.high), "ndcg@5": (ndcg.low, ndcg.high)}
    return out


def _champion_metrics(registry, dataset_path: str, home: str):
    """The champion re-scored on the candidate's test rows, or (None, why not)."""
    version = registry.champion()
    if version is None:
        return None, "no current champion"
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = registry.fetch(version, Path(tmp) / "model")
        try:
            evaluate_model(str(model_dir), dataset_path, home, str(Path(tmp) / "eval"))
        except (ValueError, KeyError, FileNotFoundError) as exc:
            return None, f"champion {version} cannot score this data: {exc}"
        return model_metrics(Path(tmp) / "eval"), f"champion {version}"


def gate_and_register(
    stan_model_dir: str,
    stan_eval_dir: str,
    ple_eval_dir: str,
    dataset_path: str,
    home: str,
    registry_uri: str,
    fingerprint: str,
    policy_path: str = "",
    force_promote: bool = False,
    override_reason: str = "",
    run_id: str = "",
) -> dict:
    """Decide, register STAN's model with the decision, and return the decision record."""
    from components.gate import GatePolicy, decide
    from components.registry.records import VersionMetadata

    policy = GatePolicy.from_yaml(policy_path) if policy_path else GatePolicy.default()
    registry = open_registry(registry_uri, home)
    stan, ple = model_metrics(stan_eval_dir), model_metrics(ple_eval_dir)
    champion, champion_note = _champion_metrics(registry, dataset_path, home)
    intervals = lift_intervals(stan_eval_dir, ple_eval_dir, policy.confidence)
    decision = decide(
        stan,
        ple,
        policy,
        champion=champion,
        intervals=intervals,
        force_promote=force_promote,
        override_reason=override_reason or None,
    )
    for check in decision.checks:
        if check.name == "champion":
            check.detail = champion_note
    record = decision.to_dict()
    record["intervals"] = {t: {m: list(v) for m, v in ms.items()} for t, ms in intervals.items()}
    record["metrics"] = {
        "stan": stan.tasks,
        "ple": ple.tasks,
        "champion": champion.tasks if champion else None,
    }
    metadata = VersionMetadata(
        model_family="stan",
        data_fingerprint=fingerprint,
        gate_passed=decision.decision == "promote",
        gate_reasons=tuple(decision.reasons),
        extra={
            "run_id": run_id,
            "overridden": decision.overridden,
            "metrics": {"stan": stan.tasks, "ple": ple.tasks},
        },
    )
    # The same model trained again (a rerun of a day) is the version already registered.
    record["version"], record["reused_version"] = registry.register_or_reuse(
        Path(stan_model_dir), metadata
    )
    record["registry_uri"] = registry.uri
    log.info(
        "gate: %s (version %s%s)",
        decision.decision,
        record["version"],
        ", already registered" if record["reused_version"] else "",
    )
    return record


def promote(registry_uri: str, home: str, version: str, reason: str, force: bool = False) -> dict:
    """Make ``version`` the champion; return the champion record."""
    registry = open_registry(registry_uri, home)
    registry.promote(version, reason, force=force)
    return {"champion": version, "champion_uri": registry.champion_uri()}
