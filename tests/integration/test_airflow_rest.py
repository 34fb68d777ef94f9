"""The retrain DAG triggered by hand through Airflow's REST API (issue #6, acceptance 3).

A real `airflow standalone` (API server, scheduler, DAG processor and triggerer; LocalExecutor
on SQLite) on 127.0.0.1 with these DAGs and a password user. The test logs in for a JWT, shows a
trigger with an invalid parameter refused with a message naming it, unpauses `stan_retrain`,
triggers it with parameters, waits for the run to succeed and reads the run's summary.
"""

import json
import shutil
import time

import pytest

from components.daily import run_folder_name
from tests.integration.airflow_server import Airflow


@pytest.fixture
def airflow(tiny_world, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    server = Airflow(home, tmp_path / "airflow")
    try:
        server.wait_ready("stan_retrain")
        yield server, home
    finally:
        server.stop()


@pytest.mark.integration
def test_trigger_stan_retrain_through_the_rest_api(airflow):
    server, home = airflow
    # A negative training window is refused before any run exists, naming the parameter.
    refused = server.api(
        "POST",
        "/dags/stan_retrain/dagRuns",
        json={"logical_date": None, "conf": {"window_days": -3}},
    )
    assert refused.status_code == 400, refused.text
    assert "Invalid input for param window_days" in refused.text, refused.text
    assert "less than the minimum of 5" in refused.text, refused.text
    # So is a model list without PLE, the baseline the gate needs.
    no_ple = server.api(
        "POST",
        "/dags/stan_retrain/dagRuns",
        json={"logical_date": None, "conf": {"models": ["stan", "mmoe"]}},
    )
    assert no_ple.status_code == 400 and "Invalid input for param models" in no_ple.text
    assert server.api("GET", "/dags/stan_retrain/dagRuns").json()["total_entries"] == 0

    assert server.api("PATCH", "/dags/stan_retrain", json={"is_paused": False}).ok
    conf = {
        "date": "2026-01-14",
        "window_days": 8,
        "epochs": 1,
        "seed": 0,
        "models": ["stan", "ple", "mmoe"],
    }
    triggered = server.api(
        "POST", "/dags/stan_retrain/dagRuns", json={"logical_date": None, "conf": conf}
    )
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]

    deadline, state = time.monotonic() + 600, "queued"
    while time.monotonic() < deadline and state not in ("success", "failed"):
        time.sleep(3)
        state = server.api("GET", f"/dags/stan_retrain/dagRuns/{run_id}").json()["state"]
    tasks = server.api("GET", f"/dags/stan_retrain/dagRuns/{run_id}/taskInstances").json()
    states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
    assert state == "success", f"run {run_id} ended {state}: {states}\n{server.tail()}"
    assert states == dict.fromkeys(("resolve_run", "run_training_pipeline", "report"), "success")

    summary = json.loads((home / "runs" / run_folder_name(run_id) / "summary.json").read_text())
    assert summary["run_id"] == run_id
    assert summary["logical_date"] == "2026-01-14"
    assert summary["gate"]["decision"] in ("promote", "reject")
    assert set(summary["metrics"]) == {"stan", "ple", "mmoe"}  # mmoe: reported, not gated
    assert set(summary["metrics"]["stan"]) == {"ctr", "stay", "cvr"}
