"""The retrain DAG triggered by hand through Airflow's REST API (issue #6, acceptance 3).

A real `airflow standalone` (API server, scheduler, DAG processor and triggerer; LocalExecutor
on SQLite) on 127.0.0.1 with these DAGs and a password user. The test logs in for a JWT, shows a
trigger with an invalid parameter refused with a message naming it, unpauses `stan_retrain`,
triggers it with parameters, waits for the run to succeed and reads the run's summary.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from components.daily import run_folder_name

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "stanflow", "not-a-real-secret"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Airflow:
    """`airflow standalone` in its own process group, and a logged-in REST session."""

    def __init__(self, home: Path, airflow_home: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        airflow_home.mkdir(parents=True)
        passwords = airflow_home / "passwords.json"
        passwords.write_text(json.dumps({USER: PASSWORD}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STANFLOW_"))}
        env.update(
            {
                "STANFLOW_HOME": str(home),
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            }
        )
        self.log = (airflow_home / "standalone.log").open("w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("airflow")), "standalone"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = requests.Session()

    def tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-6000:]

    def wait_ready(self, dag_id: str, timeout_s: float = 240) -> None:
        """Until the API answers, the login works and the DAG processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "airflow standalone exited:\n" + self.tail()
            try:
                if "Authorization" not in self.http.headers:
                    token = requests.post(
                        f"{self.url}/auth/token",
                        json={"username": USER, "password": PASSWORD},
                        timeout=10,
                    )
                    if token.status_code == 201:
                        self.http.headers["Authorization"] = (
                            f"Bearer {token.json()['access_token']}"
                        )
                if self.http.get(f"{self.url}/api/v2/dags/{dag_id}", timeout=10).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(2)
        raise AssertionError(f"Airflow not ready in {timeout_s} s:\n" + self.tail())

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return self.http.request(method, f"{self.url}/api/v2{path}", timeout=30, **kwargs)

    def stop(self) -> None:
        with_group = os.getpgid(self.proc.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


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
    assert "less than the minimum of 3" in refused.text, refused.text
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
