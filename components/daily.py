"""The daily run's paperwork: stage timings, the run summary and the HTML report.

Called by the ``stan_retrain`` DAG's last task and by ``stanflow daily`` (``make run``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# KFP component folder -> the stage name the summary reports.
STAGES = {
    "build-training-set": "training_set",
    "train-model": "train_ple",
    "train-model-2": "train_stan",
    "evaluate-model": "evaluate_ple",
    "evaluate-model-2": "evaluate_stan",
    "gate": "gate",
}


def run_folder_name(run_id: str) -> str:
    """An Airflow run id as a folder name (run ids hold ``:`` and ``+``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def component_timings(run_dir: str | Path) -> dict[str, float]:
    """Seconds per pipeline stage, from the ``seconds`` metadata each component records."""
    out = {}
    stages = dict(STAGES)
    for folder in sorted(Path(run_dir).glob("for-loop-*/*")):  # extra baselines
        for artifact, prefix in (
            ("model/model.json", "train"),
            ("evaluation/evaluation.json", "evaluate"),
        ):
            if (folder / artifact).is_file():
                family = json.loads((folder / artifact).read_text())["family"]
                stages[folder.relative_to(run_dir).as_posix()] = f"{prefix}_{family}"
    for folder, stage in stages.items():
        path = Path(run_dir) / folder / "executor_output.json"
        if not path.exists():
            continue
        outputs = json.loads(path.read_text()).get("artifacts", {})
        for artifact in outputs.values():
            for item in artifact.get("artifacts", []):
                seconds = item.get("metadata", {}).get("seconds")
                if seconds is not None:
                    out[stage] = max(out.get(stage, 0.0), float(seconds))
    return out


def write_run_report(run: dict, result: dict, timings_s: dict | None = None) -> Path:
    """``$STANFLOW_HOME/runs/<run_id>/summary.json`` and ``report.html``; returns the folder."""
    from components.gate_step import open_registry
    from components.report import write_report, write_summary
    from feature_repo import layout

    params = run["params"]
    home = Path(params["home"])
    out = home / "runs" / run_folder_name(run["run_id"])
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(result["run_dir"])
    timings = {**(timings_s or {}), **result.get("timings_s", {}), **component_timings(run_dir)}
    registry = open_registry(params["registry_uri"], str(home))
    summary = write_summary(
        run_dir,
        out,
        run_id=run["run_id"],
        logical_date=params["logical_date"],
        timings_s=timings,
        validation={"success": True, "failed_expectations": []},
        champion_uri=registry.champion_uri(),
        home=home,
    )
    docs = layout.data_docs_index(home)
    write_report(summary, run_dir, out, docs if docs.exists() else None, home=home)
    return out
