"""Reruns and backfills change nothing they should not (issue #6, acceptance 4).

* The daily cycle (`stanflow daily`: features DAG, then retrain DAG, both under `dag.test()`)
  run twice for one logical date leaves the offline store, the online store and the champion
  exactly as after the first run: partitions are replaced with identical bytes, the online rows
  are the same, and the model trained again is the version already registered (the registry
  reuses identical content and promoting the champion again is a no-op).
* Three days backfilled one by one through the features DAG equal the same days built and
  validated together and materialized in one Feast call (`stanflow features backfill`).
"""

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from components.registry.factory import storage_from_uri
from components.registry.registry import ModelRegistry

STANFLOW = str(Path(sys.executable).with_name("stanflow"))
DAY = "2026-01-14"


def _stanflow(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STANFLOW_"))}
    env["STANFLOW_HOME"] = str(home)
    run = subprocess.run([STANFLOW, *args], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr[-5000:]
    return run.stdout


def offline_store(home: Path) -> dict[str, object]:
    """SHA-256 of every feature partition file; each validation record without its time. The
    build's rollups (``features/_rollups/``) are a cache, not part of the store: their records
    name the raw files' inodes, which differ between copies of a home."""
    root = home / "features"
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        key = p.relative_to(root).as_posix()
        if key.startswith("_rollups/"):
            continue
        if key.startswith("_validation/"):  # an audit record: when it ran is not data
            record = json.loads(p.read_text().replace(str(home), "$STANFLOW_HOME"))
            record.pop("validated_at")
            out[key] = record
        else:
            out[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def online_store(home: Path) -> dict[str, list[tuple]]:
    """Every row of every online table (the SQLite store), sorted."""
    with sqlite3.connect(home / "feast" / "online.db") as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def champion_state(home: Path) -> dict:
    registry = ModelRegistry(storage_from_uri(str(home / "registry")))
    return {
        "champion": registry.champion_record(),
        "history": registry.history(),
        "versions": registry.list_versions(),
    }


@pytest.fixture
def home(tiny_world, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    return home


@pytest.mark.integration
def test_the_same_day_twice_leaves_the_stores_and_the_champion_as_one_run(home):
    args = ("daily", "--date", DAY, "--epochs", "1", "--window-days", "8")
    force = ("--force-promote", "--reason", "idempotency test: make a champion")
    first = _stanflow(home, *args, *force)
    assert "gate: PROMOTE (override)" in first
    after_one = (offline_store(home), online_store(home), champion_state(home))
    assert after_one[2]["champion"] is not None and len(after_one[2]["versions"]) == 1
    assert sum(len(rows) for rows in after_one[1].values()) > 0

    _stanflow(home, *args, *force)
    after_two = (offline_store(home), online_store(home), champion_state(home))
    assert after_two[0] == after_one[0], "offline feature partitions changed"
    assert after_two[1] == after_one[1], "online store changed"
    assert after_two[2] == after_one[2], "registry or champion changed"
    assert len(list((home / "runs").iterdir())) == 2  # each run still has its own report


@pytest.mark.integration
def test_backfilling_days_one_by_one_equals_building_them_together(home, tmp_path):
    together = tmp_path / "together"
    shutil.copytree(home, together)
    days = ("2026-01-10", "2026-01-11", "2026-01-12")
    for day in days:
        _stanflow(home, "daily", "--date", day, "--features-only")
    out = _stanflow(together, "features", "backfill", "--start", days[0], "--end", days[-1])
    assert "backfilled 2026-01-10 .. 2026-01-12 (3 days)" in out

    one_by_one = offline_store(home)
    assert len(one_by_one) == 3 * len(days)  # user and item partitions, validation records
    assert one_by_one == offline_store(together)
    online = online_store(home)
    assert online == online_store(together)
    # The online values are the last day's: every row carries the end of 2026-01-12.
    stamps = {row[5] for rows in online.values() for row in rows}
    assert stamps == {1768262400}
