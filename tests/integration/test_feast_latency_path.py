"""Online lookups reuse one FeatureStore per home (bench/feast_bench.py: opening one costs ~20x a
lookup), and never read through a stale one: a new materialization, in this process or another,
is seen by the next lookup."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from feature_repo import store
from feature_repo.build import build_features
from feature_repo.validate import validate_features

pytestmark = pytest.mark.integration

D = dt.date(2026, 1, 8)
PREVIOUS = D - dt.timedelta(days=1)
USERS = [1, 2, 3]


@pytest.fixture(scope="module")
def validated(tiny_world, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("latency_path")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in (PREVIOUS, D):
        build_features(home, day)
        validate_features(home, day)
    return home


def _as_of(home: Path) -> set[str]:
    rows = store.get_online_features(home, "user", USERS)
    return {r["user_lifecycle__as_of_date"] for r in rows}


def test_lookups_share_one_store_until_the_registry_changes(validated, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(validated, home)
    store.materialize(home, PREVIOUS)
    opened = []
    real_open = store.open_store
    monkeypatch.setattr(store, "open_store", lambda *a, **k: opened.append(1) or real_open(*a, **k))

    assert _as_of(home) == {PREVIOUS.isoformat()}
    assert _as_of(home) == {PREVIOUS.isoformat()}
    assert store.serving_store(home) is store.serving_store(home)
    assert len(opened) == 1  # the first lookup opened it; the others reused it

    store.materialize(home, D)  # rewrites the registry: the next lookup opens a fresh store
    assert _as_of(home) == {D.isoformat()}
    assert len(opened) == 3  # materialize's own store, then the new serving store


def test_a_replaced_online_database_is_not_read_through_the_old_connection(validated, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(validated, home)
    store.materialize(home, D)
    assert _as_of(home) == {D.isoformat()}
    online = home / "feast" / "online.db"
    # Another process replaces the SQLite file (a restore, a copy from another home).
    other = tmp_path / "other"
    shutil.copytree(validated, other)
    store.materialize(other, PREVIOUS)
    shutil.copyfile(other / "feast" / "online.db", tmp_path / "online.db.new")
    (tmp_path / "online.db.new").replace(online)
    assert _as_of(home) == {PREVIOUS.isoformat()}
