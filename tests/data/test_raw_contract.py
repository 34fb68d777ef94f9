"""The simulator's output honours the raw-data contract (schema, keys, label logic, no leakage)."""

import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pytest

from stan_model.data import raw_store
from stan_model.data.simulator import write_world
from stan_model.data.world_config import WorldConfig
from stan_model.schema import DEFAULT_TASKS, read_table, task_labels


@pytest.fixture(scope="module")
def events(tiny_world):
    return raw_store.read_events(tiny_world)


def test_every_partition_meets_the_schema_and_holds_only_its_day(tiny_world):
    days = raw_store.partition_days(tiny_world)
    assert len(days) == WorldConfig.preset("tiny").n_days
    for day in days:
        table = read_table(raw_store.events_partition(tiny_world, day), "events")
        assert table.num_rows > 0
        dates = set(pc.cast(table["event_ts"], "date32").to_pylist())
        assert dates == {day}


def test_keys_are_unique_and_resolve(tiny_world, events):
    ids = events["event_id"].to_numpy()
    assert len(np.unique(ids)) == len(ids)
    users = read_table(raw_store.users_path(tiny_world), "users")
    items = read_table(raw_store.items_path(tiny_world), "items")
    assert set(events["user_id"].to_numpy()) <= set(users["user_id"].to_numpy())
    assert set(events["item_id"].to_numpy()) <= set(items["item_id"].to_numpy())
    signup = dict(zip(users["user_id"].to_pylist(), users["signup_ts"].to_pylist(), strict=True))
    first = {}
    for u, ts in zip(events["user_id"].to_pylist(), events["event_ts"].to_pylist(), strict=True):
        first.setdefault(u, ts)
    assert all(signup[u] <= ts for u, ts in first.items())


def test_label_logic(events):
    click = events["click"].to_numpy()
    stay = events["stay_seconds"].to_numpy()
    order = events["order"].to_numpy()
    assert set(np.unique(click)) <= {0, 1} and set(np.unique(order)) <= {0, 1}
    assert np.all(order <= click), "an order implies a click"
    assert np.all(stay[click == 0] == 0), "no stay without a click"
    assert np.all(stay >= 0)
    for task in DEFAULT_TASKS:  # every task has both classes, or no model can learn it
        rate = pc.mean(pc.cast(task_labels(events, task), "float64")).as_py()
        assert 0.001 < rate < 0.5, (task.name, rate)


def test_latent_stage_is_never_in_raw_data(tiny_world, events):
    for table in (events, read_table(raw_store.users_path(tiny_world), "users")):
        assert not {"latent_stage", "stage", "engagement"} & set(table.column_names)
    truth = read_table(raw_store.truth_partition(tiny_world, dt.date(2026, 1, 1)), "truth")
    assert truth.num_rows > 0


def test_manifest_describes_the_world(tiny_world, events):
    m = raw_store.read_manifest(tiny_world)
    assert m.source == "simulator"
    assert [t.name for t in m.tasks] == ["ctr", "stay", "cvr"]
    assert m.n_events == events.num_rows


def test_rewriting_a_shorter_world_replaces_partitions(tmp_path):
    cfg = WorldConfig.preset("tiny")
    write_world(cfg, tmp_path)
    write_world(cfg.with_overrides(n_days=5), tmp_path)
    assert len(raw_store.partition_days(tmp_path)) == 5
    assert not list(tmp_path.rglob("*.tmp"))
