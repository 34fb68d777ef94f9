"""The daily DAGs under the production profile (issue #7): every service real, on loopback.

``STANFLOW_PROFILE=production`` with an S3 registry: `airflow db migrate` on a fresh PostgreSQL
database (127.0.0.1:5432, dropped at the end), then `airflow standalone` (scheduler with the
LocalExecutor, DAG processor, API server, triggerer) in the environment ``stanflow airflow-env``
prints, with the test's own database URL winning over the profile's default.
The test triggers ``stan_lifecycle_features`` and then ``stan_retrain`` for the tiny world's last
day over REST and checks where everything landed: the day's features in Redis (database 12),
STAN's registered version in SeaweedFS S3, every task instance ``success`` in PostgreSQL.

Parallelism: both DAGs are linear chains (each task consumes the one before; the retrain
consumes the features), so no two of their tasks can overlap and none were added to show it.
The test shows instead, from the scheduler's log, that every task ran on the LocalExecutor and
that it started ``AIRFLOW__CORE__PARALLELISM`` >= 2 worker processes (tasks at once).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pyarrow.parquet as pq
import pytest
import redis

from components.daily import run_folder_name
from components.registry import registry_from_settings
from feature_repo import layout
from feature_repo.store import get_online_features
from stanflow.cli_airflow import airflow_env
from stanflow.settings import Settings
from tests.integration.airflow_server import Airflow
from tests.integration.seaweed import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedServer

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 1, 14)  # the tiny world's last day
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
REDIS_DB = 12  # reserved for this test (test_feast_online uses 13); keys of project stanflow only
PROJECT = b"stanflow"
FEATURE_TASKS = ("check_raw_partition", "build_features", "validate_features", "materialize")
RETRAIN_TASKS = ("resolve_run", "run_training_pipeline", "report")
BUDGET_S = 480  # for both runs, under pytest's 600 s; the runs take about 2 minutes


def _admin(statement: str) -> None:
    # Not `with connection`: that opens a transaction, and CREATE / DROP DATABASE refuse one.
    with contextlib.closing(psycopg2.connect(dbname="postgres", **PG)) as connection:
        connection.autocommit = True
        with connection.cursor() as cur:
            cur.execute(statement)


@pytest.fixture
def metadata_db() -> Iterator[str]:
    """A fresh PostgreSQL database for Airflow's metadata; dropped, connections and all, after."""
    name = f"stanflow_prod_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _project_keys(client: redis.Redis) -> list[bytes]:
    return [k for k in client.scan_iter(count=1000) if k.endswith(PROJECT)]


@pytest.fixture
def online_redis() -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    if keys := _project_keys(client):  # leftovers of an interrupted run
        client.delete(*keys)
    try:
        yield client
    finally:
        if keys := _project_keys(client):
            client.delete(*keys)


@pytest.fixture
def production(
    tiny_world, tmp_path, monkeypatch, metadata_db, online_redis, seaweed: SeaweedServer
):
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    url = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{metadata_db}"
    stanflow_env = {
        "STANFLOW_HOME": str(home),
        "STANFLOW_PROFILE": "production",
        "STANFLOW_REGISTRY_URI": f"s3://{BUCKET}/prod-{uuid.uuid4().hex[:8]}",
        "STANFLOW_S3_ENDPOINT_URL": seaweed.endpoint,
        "STANFLOW_REDIS_URL": f"127.0.0.1:6379,db={REDIS_DB}",
    }
    settings = Settings.from_env(stanflow_env)
    assert settings.online_store == "redis"  # the profile's default
    explicit = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url}  # wins over the profile's default
    profile = airflow_env(settings, explicit)
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in profile
    assert profile["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert int(profile["AIRFLOW__CORE__PARALLELISM"]) >= 2
    aws = {  # boto3's standard chain finds these, in the tasks and in this test
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = {
        **stanflow_env,
        **profile,
        **explicit,
        **aws,
        # The world is January 2026's: no time-based or asset-triggered runs, only ours.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "OMP_NUM_THREADS": "1",  # one torch thread: the machine is small and shared
        "MKL_NUM_THREADS": "1",
    }
    server = Airflow(home, Path(profile["AIRFLOW_HOME"]), env, start=False)
    try:
        server.run_command("db", "migrate", timeout_s=300)
        server.start()
        server.wait_ready("stan_lifecycle_features", "stan_retrain")
        yield server, home, settings, metadata_db
    finally:
        server.stop()


def _task_log(server: Airflow, dag_id: str, run_id: str, task_id: str, lines: int = 40) -> str:
    """The last events of a task's latest attempt, exceptions included (the logs are JSON)."""
    folder = server.airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    attempts = sorted((folder / f"task_id={task_id}").glob("attempt=*.log"))
    if not attempts:
        return f"--- {task_id}: no log"
    events = []
    for line in attempts[-1].read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            events.append(line)
            continue
        events.append(str(record.get("event", "")))
        for error in record.get("error_detail") or []:
            events.append(f"{error.get('exc_type')}: {error.get('exc_value')}")
    return f"--- {task_id} ({attempts[-1].name}):\n" + "\n".join(events[-lines:])


def _run_dag(server: Airflow, dag_id: str, body: dict, deadline: float) -> str:
    """Unpause, trigger, and wait for success; a failed or retrying task fails the test at once."""
    assert server.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).ok
    triggered = server.api("POST", f"/dags/{dag_id}/dagRuns", json=body)
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]
    state, states = "queued", {}
    while time.monotonic() < deadline:
        state = server.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        tasks = server.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        states = {t["task_id"]: t["state"] for t in tasks["task_instances"]}
        broken = {"failed", "up_for_retry", "upstream_failed"} & set(states.values())
        if state in ("success", "failed") or broken:
            break
        time.sleep(2)
    if state != "success":
        logs = "\n".join(
            _task_log(server, dag_id, run_id, task)
            for task, task_state in states.items()
            if task_state not in ("success", "scheduled", "queued", None)
        )
        standalone = "\n".join(line[:300] for line in server.tail(20000).splitlines()[-25:])
        pytest.fail(
            f"{dag_id} run {run_id} is {state}; tasks: {states}\n{logs}\n"
            f"--- airflow standalone log, last lines:\n{standalone}"
        )
    return run_id


def test_daily_dags_under_the_production_profile(production):
    server, home, settings, database = production
    deadline = time.monotonic() + BUDGET_S
    features_run = _run_dag(
        server,
        "stan_lifecycle_features",
        {"logical_date": f"{DAY}T00:00:00+00:00", "conf": {}},
        deadline,
    )
    conf = {"date": DAY.isoformat(), "window_days": 5, "epochs": 1, "seed": 0}  # short: CI
    retrain_run = _run_dag(server, "stan_retrain", {"logical_date": None, "conf": conf}, deadline)

    # Feast's online store is Redis: a user's features read back equal the offline partition.
    assert not (layout.feast_dir(home) / "online.db").exists(), "SQLite online store was used"
    offline = pq.read_table(layout.feature_partition(home, layout.USER_TABLE, DAY)).to_pylist()
    user = offline[len(offline) // 2]
    (online,) = get_online_features(home, "user", [user["user_id"]], settings)
    features = {k.split("__", 1)[1]: v for k, v in online.items() if "__" in k}
    assert features and features == {k: user[k] for k in features}
    assert _project_keys(redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB))

    # The model registry is on S3: STAN's model is a registered version, and the run says so.
    registry = registry_from_settings(settings)
    versions = registry.list_versions()
    assert len(versions) == 1, versions
    summary = json.loads(
        (home / "runs" / run_folder_name(retrain_run) / "summary.json").read_text()
    )
    assert summary["model_uri"] == f"{settings.registry_uri}/versions/{versions[0]}"
    assert not (home / "registry").exists(), "a local registry was written"

    # Airflow's metadata is in PostgreSQL (no SQLite file), every task instance a success.
    assert not (server.airflow_home / "airflow.db").exists()
    with contextlib.closing(psycopg2.connect(dbname=database, **PG)) as db, db.cursor() as cur:
        cur.execute("SELECT dag_id, run_id, task_id, state FROM task_instance ORDER BY start_date")
        rows = cur.fetchall()
        cur.execute(
            "SELECT DISTINCT job_type FROM job WHERE id IN "
            "(SELECT queued_by_job_id FROM task_instance)"
        )
        queued_by = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT count(*) FROM asset_event WHERE source_run_id = %s", (features_run,))
        (asset_events,) = cur.fetchone()
    expected = {("stan_lifecycle_features", features_run, t) for t in FEATURE_TASKS}
    expected |= {("stan_retrain", retrain_run, t) for t in RETRAIN_TASKS}
    assert {r[:3] for r in rows} == expected
    assert {r[3] for r in rows} == {"success"}, rows
    assert queued_by == {"SchedulerJob"}  # the scheduler queued them, not dag.test()
    assert asset_events == 1  # the features run published the asset the retrain listens to

    # The scheduler's LocalExecutor ran each of them, with PARALLELISM >= 2 worker processes.
    # It logs "TaskInstance Finished" when it handles the executor's event for a task, which can
    # come after the run already reads success: wait (a bounded while) for every task's line.
    wanted = {(d, t) for d, _, t in expected}
    finished_line = r"TaskInstance Finished: dag_id=(\w+), task_id=(\w+), .*?executor=([^,]+),"
    settle = time.monotonic() + 60
    while True:
        log = Path(server.log.name).read_text(errors="replace")
        finished = re.findall(finished_line, log)
        if wanted <= {(d, t) for d, t, _ in finished} or time.monotonic() > settle:
            break
        time.sleep(1)
    parallelism = int(server.env["AIRFLOW__CORE__PARALLELISM"])
    assert parallelism >= 2
    assert len(set(re.findall(r"Worker starting up pid=(\d+)", log))) == parallelism, log[-4000:]
    assert wanted == {(d, t) for d, t, _ in finished}
    assert {e for _, _, e in finished} == {f"LocalExecutor(parallelism={parallelism})"}
