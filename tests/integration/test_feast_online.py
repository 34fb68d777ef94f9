"""Online lookups return exactly the offline values of the materialized day: through the
`stanflow features get` command, and through `feast serve` over HTTP, on SQLite and on the Redis
at 127.0.0.1:6379 (database 13, keys of project ``stanflow`` only, removed afterwards).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import redis
from click.testing import CliRunner

from feature_repo import layout
from feature_repo.build import build_features
from feature_repo.store import get_online_features, materialize, open_store
from feature_repo.validate import validate_features
from stan_model.data import raw_store
from stanflow.cli import main
from stanflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FEAST = str(Path(sys.executable).parent / "feast")  # the CLI installed beside this Python
D = dt.date(2026, 1, 8)
REDIS_DB = 13  # reserved for stanflow's tests; only keys of the project below are touched
PROJECT = b"stanflow"
BACKENDS = {
    "sqlite": {"STANFLOW_ONLINE_STORE": "sqlite"},
    "redis": {
        "STANFLOW_ONLINE_STORE": "redis",
        "STANFLOW_REDIS_URL": f"127.0.0.1:6379,db={REDIS_DB}",
    },
}

pytestmark = pytest.mark.integration


def _remove_project_keys() -> int:
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    keys = [k for k in client.scan_iter(count=1000) if k.endswith(PROJECT)]
    if keys:
        client.delete(*keys)
    return len(keys)


@pytest.fixture(scope="module")
def built(tiny_world, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("online_built")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in (D - dt.timedelta(days=1), D):
        build_features(home, day)
    validate_features(home, D)
    return home


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def served(request, built, tmp_path_factory):
    """(home, environment, settings) with day D materialized into the backend's online store."""
    backend = request.param
    home = tmp_path_factory.mktemp(f"online_{backend}")
    shutil.copytree(built, home, dirs_exist_ok=True)
    env = {"STANFLOW_HOME": str(home), **BACKENDS[backend]}
    settings = Settings.from_env(env)
    if backend == "redis":
        _remove_project_keys()  # leftovers of an interrupted run
    materialize(home, D, settings)
    yield home, env, settings
    if backend == "redis":
        open_store(home, settings).teardown()
        _remove_project_keys()
        client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
        assert not [k for k in client.scan_iter(count=1000) if k.endswith(PROJECT)]


def _offline(home: Path, table: str) -> dict[int, dict]:
    key = "user_id" if table == layout.USER_TABLE else "item_id"
    rows = pq.read_table(layout.feature_partition(home, table, D)).to_pylist()
    return {row[key]: row for row in rows}


def _probe(ids: list[int]) -> list[int]:
    return ids[:4] + ids[len(ids) // 2 : len(ids) // 2 + 2] + ids[-4:]


def test_cli_lookup_returns_the_offline_values(served):
    home, env, _ = served
    offline = _offline(home, layout.USER_TABLE)
    runner = CliRunner(env=env)
    for user in _probe(sorted(offline)):
        result = runner.invoke(main, ["features", "get", "--user-id", str(user), "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert payload["source"].endswith(f"({env.get('STANFLOW_ONLINE_STORE', 'sqlite')})")
        expected = {
            name: offline[user][name.split("__", 1)[1]] for name in payload["features"]
        }
        assert payload["features"] == expected


def test_item_lookup_returns_the_offline_values(served):
    home, _, settings = served
    offline = _offline(home, layout.ITEM_TABLE)
    items = _probe(sorted(offline))
    for row in get_online_features(home, "item", items, settings):
        source = offline[row["item_id"]]
        for name, value in row.items():
            if "__" in name:
                assert value == source[name.split("__", 1)[1]], name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(port: int, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/get-online-features",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture()
def feature_server(served, tmp_path):
    """`feast serve` on the declarative repo, configured by the environment as documented."""
    home, env, _ = served
    log_path = tmp_path / "feast_serve.log"  # a file, not a pipe nobody drains
    port = _free_port()
    yaml = "feature_store.redis.yaml" if env.get("STANFLOW_ONLINE_STORE") == "redis" else None
    command = [FEAST, "-c", str(REPO / "feature_repo")]
    if yaml:
        command += ["-f", str(REPO / "feature_repo" / yaml)]
    command += ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    log_file = open(log_path, "wb")  # noqa: SIM115 -- closed in the finally below
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=home,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the gunicorn workers stop with it
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log_path.read_text(errors="replace")
                    pytest.fail(f"feast serve did not come up on port {port}:\n{output}")
                time.sleep(0.5)
        yield port, home
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        log_file.close()


def test_feature_server_returns_the_offline_values(feature_server):
    port, home = feature_server
    users = _offline(home, layout.USER_TABLE)
    items = _offline(home, layout.ITEM_TABLE)
    probe_users = _probe(sorted(users))
    probe_items = _probe(sorted(items))[: len(probe_users)]
    # The model's whole feature vector, by its versioned service, for (user, item) pairs.
    body = {
        "feature_service": "stan_v1",
        "entities": {"user_id": probe_users, "item_id": probe_items},
        "full_feature_names": True,
    }
    response = _post(port, body)
    names = response["metadata"]["feature_names"]
    assert len(names) > 40
    columns = dict(zip(names, response["results"], strict=True))
    for name, result in columns.items():
        if name in ("user_id", "item_id"):
            continue
        view, feature = name.split("__", 1)
        source, ids = (items, probe_items) if view == "item_stats" else (users, probe_users)
        assert result["statuses"] == ["PRESENT"] * len(ids), name
        assert result["values"] == [source[i][feature] for i in ids], name


def test_feast_apply_registers_the_declarative_repo(tmp_path):
    """`feast apply` reads feature_store.yaml + definitions.py; .feastignore keeps the rest out."""
    home = tmp_path / "home"
    home.mkdir()  # a data home exists before anyone applies a repo to it
    env = {**os.environ, "STANFLOW_HOME": str(home)}
    result = subprocess.run(
        [FEAST, "-c", str(REPO / "feature_repo"), "apply"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("user", "item", "user_lifecycle", "user_activity", "item_stats", "stan_v1"):
        assert f" {name}\n" in result.stdout, name
    store = open_store(home)
    assert sorted(v.name for v in store.list_feature_views()) == [
        "item_stats",
        "user_activity",
        "user_lifecycle",
    ]
    source = store.get_data_source("user_features")
    assert source.path == layout.feature_glob(home, layout.USER_TABLE)
    assert sorted(p.name for p in layout.feast_dir(home).iterdir()) == [
        "feature_store.yaml",
        "online.db",
        "registry.db",
    ]
    assert raw_store.events_dir(home).exists() is False  # apply touches no data
