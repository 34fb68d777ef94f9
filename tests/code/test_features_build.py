"""The DuckDB feature build: windowed counts, rates, recency, the lifecycle rule, task rates, items.

Every figure is checked against an independent computation from the raw events (numpy / pyarrow
over ``world_stats.load_panel``), and the lifecycle stage against ``stan_model.lifecycle`` itself.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_repo import layout
from feature_repo.build import build_features
from feature_repo.contract import table_schema
from stan_model.data import raw_store
from stan_model.data.world_stats import load_panel
from stan_model.lifecycle import WINDOW_DAYS, rule_based_stage, windowed_sum
from stan_model.schema import (
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    TaskSpec,
    WorldManifest,
)

START = dt.date(2026, 1, 1)


@pytest.fixture(scope="module")
def built(tiny_world, tmp_path_factory) -> Path:
    """A copy of the tiny world with every day's features built."""
    home = tmp_path_factory.mktemp("features_built")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in raw_store.partition_days(home):
        build_features(home, day)
    return home


@pytest.fixture(scope="module")
def panel(built):
    return load_panel(built)


def _users(home: Path, day: dt.date) -> pa.Table:
    return pq.read_table(layout.feature_partition(home, layout.USER_TABLE, day))


def test_lifecycle_stage_matches_the_reference_rule_every_day(built, panel):
    windows = {
        name: windowed_sum(getattr(panel, name), WINDOW_DAYS)
        for name in ("impressions", "long_stays", "orders")
    }
    compared = 0
    for j, day in enumerate(panel.days):
        users = _users(built, day)
        uid = users["user_id"].to_numpy()
        tenure = j - panel.signup_day[uid]
        expected = rule_based_stage(
            tenure,
            windows["impressions"][uid, j],
            windows["long_stays"][uid, j],
            windows["orders"][uid, j],
        )
        assert np.array_equal(users["lifecycle_stage_id"].to_numpy(), expected), day
        assert np.array_equal(users["tenure_days"].to_numpy(), tenure)
        compared += len(uid)
    assert compared > 4_000
    # The rule is not degenerate on this world: every stage occurs.
    last = _users(built, panel.days[-1])
    assert set(last["lifecycle_stage"].to_pylist()) >= {"new", "wander", "stick", "loyal"}


@pytest.mark.parametrize("window", [1, 7, 30])
def test_windowed_counts_and_rates_match_the_events(built, panel, window):
    day_index = len(panel.days) - 1
    users = _users(built, panel.days[day_index])
    uid = users["user_id"].to_numpy()
    for name in ("impressions", "clicks", "long_stays", "orders"):
        expected = windowed_sum(getattr(panel, name), window)[uid, day_index]
        assert np.array_equal(users[f"{name}_{window}d"].to_numpy(), expected), name
    imp = users[f"impressions_{window}d"].to_numpy().astype(float)
    clicks = users[f"clicks_{window}d"].to_numpy()
    ctr = np.divide(clicks, imp, out=np.zeros_like(imp), where=imp > 0)
    assert np.array_equal(users[f"ctr_{window}d"].to_numpy(), ctr)
    for rate in ("ctr", "long_stay_rate", "cvr"):
        values = users[f"{rate}_{window}d"].to_numpy()
        assert values.min() >= 0 and values.max() <= 1


def test_sessions_dwell_and_recency_match_the_events(built):
    day = START + dt.timedelta(days=13)
    events = raw_store.read_events(built, [day - dt.timedelta(days=k) for k in range(7)])
    frame = events.to_pandas()
    frame["day"] = frame["event_ts"].dt.date
    users = _users(built, day).to_pandas().set_index("user_id")
    sessions = frame.groupby("user_id")["session_id"].nunique()
    dwell = frame["stay_seconds"].astype("float64").groupby(frame["user_id"]).sum()
    assert (users.loc[sessions.index, "sessions_7d"] == sessions).all()
    assert np.allclose(users.loc[dwell.index, "dwell_seconds_7d"], dwell, rtol=1e-9, atol=1e-6)
    last_seen = frame.groupby("user_id")["day"].max().map(lambda d: (day - d).days)
    assert (users.loc[last_seen.index, "days_since_last_impression"] == last_seen).all()
    # Users not seen for the whole window carry the "none in the window" value.
    all_days = raw_store.read_events(built)
    seen = set(all_days["user_id"].to_pylist())
    never = users.index.difference(list(seen))
    assert (users.loc[never, "days_since_last_impression"] == WINDOW_DAYS).all()


def test_item_stats_match_the_events(built):
    day = START + dt.timedelta(days=10)
    week = raw_store.read_events(built, [day - dt.timedelta(days=k) for k in range(7)])
    items = pq.read_table(layout.feature_partition(built, layout.ITEM_TABLE, day)).to_pandas()
    items = items.set_index("item_id")
    frame = week.to_pandas()
    grouped = frame.groupby("item_id")
    assert (items.loc[grouped.size().index, "impressions_7d"] == grouped.size()).all()
    assert (items.loc[grouped.size().index, "users_7d"] == grouped["user_id"].nunique()).all()
    ctr = grouped["click"].sum() / grouped.size()
    assert np.allclose(items.loc[ctr.index, "ctr_7d"], ctr)
    catalogue = pq.read_table(raw_store.items_path(built)).num_rows
    assert len(items) == catalogue  # every item, shown or not, so no online value goes stale


def test_task_rates_follow_the_worlds_task_list(tiny_world, tmp_path):
    shutil.copytree(tiny_world, tmp_path, dirs_exist_ok=True)
    manifest = raw_store.read_manifest(tmp_path)
    manifest.tasks = [TaskSpec("cvr", "order"), TaskSpec("glance", "stay_seconds", threshold=5.0)]
    raw_store.write_manifest(tmp_path, manifest)
    day = START + dt.timedelta(days=2)
    build_features(tmp_path, day)
    users = _users(tmp_path, day).to_pandas().set_index("user_id")
    events = raw_store.read_events(tmp_path, [day - dt.timedelta(days=k) for k in range(3)])
    frame = events.to_pandas()
    frame["glance"] = (frame["stay_seconds"] >= 5.0).astype(int)
    grouped = frame.groupby("user_id")
    rates = np.stack(users.loc[grouped.size().index, "task_rates_30d"].to_numpy())
    assert rates.shape[1] == 2
    assert np.allclose(rates[:, 0], grouped["order"].sum() / grouped.size())
    assert np.allclose(rates[:, 1], grouped["glance"].sum() / grouped.size())


def test_building_a_day_twice_replaces_it(built):
    day = START + dt.timedelta(days=5)
    before = _users(built, day)
    build_features(built, day)
    folder = layout.feature_partition(built, layout.USER_TABLE, day).parent
    assert sorted(p.name for p in folder.iterdir()) == [layout.PART_FILE]
    after = _users(built, day)
    assert after.num_rows == before.num_rows
    assert pc.count_distinct(after["user_id"]).as_py() == after.num_rows
    ints = [f.name for f in after.schema if pa.types.is_integer(f.type)]
    assert after.select(ints).equals(before.select(ints))


def test_written_tables_follow_the_feast_views(built):
    day = START + dt.timedelta(days=3)
    for table in layout.FEATURE_TABLES:
        written = pq.read_schema(layout.feature_partition(built, table, day))
        assert written.remove_metadata().equals(table_schema(table)), table


def test_a_missing_raw_day_says_what_to_do(built):
    with pytest.raises(FileNotFoundError, match="stanflow simulate"):
        build_features(built, START - dt.timedelta(days=1))


# -- hand-made populations: the median split at its edges -----------------------------------------

def _handmade_home(home: Path, population: list[tuple[int, int, int, int]]) -> dt.date:
    """One day of events for users given as (tenure_days, impressions, long_stays, orders)."""
    day = dt.date(2026, 3, 1)
    day_start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    rows = {name: [] for name in EVENTS_SCHEMA.names}
    for user, (_, impressions, long_stays, orders) in enumerate(population):
        for k in range(impressions):
            rows["event_id"].append(len(rows["event_id"]))
            rows["user_id"].append(user)
            rows["item_id"].append(0)
            rows["session_id"].append(user)
            rows["event_ts"].append(day_start + dt.timedelta(minutes=k))
            rows["position"].append(k)
            rows["click"].append(1 if k < max(long_stays, orders) else 0)
            rows["stay_seconds"].append(40.0 if k < long_stays else 0.0)
            rows["order"].append(1 if k < orders else 0)
    raw_store.write_parquet(
        pa.table(rows, schema=EVENTS_SCHEMA), raw_store.events_partition(home, day)
    )
    n = len(population)
    signup = [day_start - dt.timedelta(days=t) for t, *_ in population]
    users = pa.table(
        {
            "user_id": list(range(n)),
            "signup_ts": signup,
            **{c: [-1] * n for c in ("age_bucket", "gender", "device_os", "city_tier")},
        },
        schema=USERS_SCHEMA,
    )
    raw_store.write_parquet(users, raw_store.users_path(home))
    items = pa.table(
        {
            "item_id": [0],
            "category_id": [-1],
            "author_id": [-1],
            "duration_s": [60.0],
            "price": [0.0],
            "created_ts": [day_start - dt.timedelta(days=30)],
        },
        schema=ITEMS_SCHEMA,
    )
    raw_store.write_parquet(items, raw_store.items_path(home))
    manifest = WorldManifest(
        source="handmade",
        tasks=[TaskSpec("ctr", "click"), TaskSpec("stay", "stay_seconds", 30.0)],
        start_date=day.isoformat(),
        end_date=day.isoformat(),
        n_users=n,
        n_items=1,
        n_events=len(rows["event_id"]),
    )
    raw_store.write_manifest(home, manifest)
    return day


@pytest.mark.parametrize(
    "population",
    [
        # even count of scored users: numpy interpolates the median between 1/10 and 2/10
        [(30, 10, 0, 0), (30, 10, 1, 1), (30, 10, 2, 2), (30, 10, 3, 3)],
        # odd count, ties on the median
        [(30, 10, 1, 0), (30, 10, 1, 0), (30, 10, 1, 1), (30, 10, 5, 1), (30, 10, 0, 2)],
        # new users, an unscored (silent) user and equal rates everywhere
        [(2, 10, 5, 5), (6, 0, 0, 0), (40, 0, 0, 0), (9, 4, 1, 1), (9, 8, 2, 2)],
    ],
    ids=["even", "odd-ties", "new-unscored-equal"],
)
def test_median_split_at_its_edges(tmp_path, population):
    home = tmp_path / "o'brien's home"  # a quote in the path must not break the SQL
    day = _handmade_home(home, population)
    build_features(home, day)
    users = _users(home, day)
    tenure, imp, ls, orders = (np.array(col) for col in zip(*population, strict=True))
    expected = rule_based_stage(tenure, imp, ls, orders)
    assert users["lifecycle_stage_id"].to_pylist() == expected.tolist()


def test_importing_the_feature_code_does_no_io(tmp_path):
    home = tmp_path / "never_created"
    modules = [
        "feature_repo.definitions",
        "feature_repo.build",
        "feature_repo.store",
        "feature_repo.validate",
        "feature_repo.training",
        "stanflow.cli_features",
    ]
    env = {**os.environ, "STANFLOW_HOME": str(home)}
    code = "import " + ", ".join(modules)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert not any(tmp_path.iterdir())  # no home, no Feast or GX folders, nothing


# -- per-raw-day rollups: reused when current, recomputed when the raw day changes ---------------

def _tables(home: Path, day: dt.date) -> dict[str, pa.Table]:
    return {t: pq.read_table(layout.feature_partition(home, t, day)) for t in layout.FEATURE_TABLES}


def test_rollups_are_reused_and_equal_a_build_from_scratch(tiny_world, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    days = raw_store.partition_days(home)
    reports = [build_features(home, day) for day in days]
    # A backfill aggregates each raw day once: later days reuse the earlier days' rollups.
    assert [r.rollup_days_computed for r in reports] == [1] * len(days)
    assert [r.rollup_days_reused for r in reports] == list(range(len(days)))
    for rollup in layout.ROLLUPS:
        assert layout.rollup_partition(home, rollup, days[-1]).exists(), rollup
    incremental = _tables(home, days[-1])
    again = build_features(home, days[-1])
    assert (again.rollup_days_computed, again.rollup_days_reused) == (0, len(days))
    shutil.rmtree(layout.rollups_root(home))
    scratch = build_features(home, days[-1])
    assert scratch.rollup_days_computed == len(days)
    for table, built_incrementally in incremental.items():
        assert _tables(home, days[-1])[table].equals(built_incrementally), table


def _rewritten(events: pa.Table) -> pa.Table:
    """The same events with every impression given to user 0 and every label set: other data,
    a file of about the same size."""
    n = events.num_rows
    columns = {name: events[name] for name in events.column_names}
    columns["user_id"] = pa.array(np.zeros(n, np.int64))
    columns["click"] = pa.array(np.ones(n, np.int8))
    columns["order"] = pa.array(np.ones(n, np.int8))
    return pa.table(columns, schema=events.schema)


def _backfilled_copy(tiny_world: Path, tmp_path: Path) -> tuple[Path, list[dt.date]]:
    """A copy of the tiny world with every day built in order (rollups stored), and its days."""
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    days = raw_store.partition_days(home)
    for day in days:
        build_features(home, day)
    return home, days


def test_a_rewritten_raw_day_invalidates_its_rollups(tiny_world, tmp_path):
    home, days = _backfilled_copy(tiny_world, tmp_path)
    changed = days[-3]  # inside every window of the last 3 days, and of their 7-day reach
    path = raw_store.events_partition(home, changed)
    stat = path.stat()
    raw_store.write_parquet(_rewritten(pq.read_table(path)), path)  # as the simulator / load do
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old mtime
    report = build_features(home, days[-1])
    assert report.rollup_days_computed == 1 and report.rollup_days_reused == len(days) - 1
    stale = _tables(home, days[-1])
    # What a build that never saw the old data gives:
    fresh = tmp_path / "fresh"
    shutil.copytree(home, fresh, ignore=shutil.ignore_patterns("features"))
    build_features(fresh, days[-1])
    for table, expected in _tables(fresh, days[-1]).items():
        assert stale[table].equals(expected), table
    users = stale[layout.USER_TABLE].to_pandas().set_index("user_id")
    assert users.loc[0, "orders_30d"] >= pq.read_metadata(path).num_rows
    items = stale[layout.ITEM_TABLE].to_pandas()
    assert items["users_7d"].max() >= 1  # the reach rollups of the days after it were redone too
    for day in days[-2:]:
        again = build_features(home, day)
        assert again.rollup_days_computed == 0
    fresh_days = [build_features(fresh, d) for d in days[-2:]]
    for day, _ in zip(days[-2:], fresh_days, strict=True):
        for table, expected in _tables(fresh, day).items():
            assert _tables(home, day)[table].equals(expected), (day, table)


def test_other_tasks_recompute_the_rollups(tiny_world, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(tiny_world, home)
    day = raw_store.partition_days(home)[4]
    build_features(home, day)
    manifest = raw_store.read_manifest(home)
    manifest.tasks = [TaskSpec("glance", "stay_seconds", threshold=5.0)]
    raw_store.write_manifest(home, manifest)
    report = build_features(home, day)
    assert report.rollup_days_computed == report.raw_days == 5
    rates = _tables(home, day)[layout.USER_TABLE]["task_rates_30d"]
    assert {len(r.as_py()) for r in rates} == {1}


def test_bad_raw_input_leaves_the_feature_partitions_as_they_were(tiny_world, tmp_path):
    home, days = _backfilled_copy(tiny_world, tmp_path)
    before = {
        t: layout.feature_partition(home, t, days[-1]).read_bytes() for t in layout.FEATURE_TABLES
    }
    broken = raw_store.events_partition(home, days[-2])
    broken.write_bytes(b"not parquet at all" * 100)
    with pytest.raises(Exception):  # noqa: B017 (pyarrow's error for a file that is not Parquet)
        build_features(home, days[-1])
    for table, content in before.items():
        folder = layout.feature_partition(home, table, days[-1]).parent
        assert layout.feature_partition(home, table, days[-1]).read_bytes() == content, table
        assert sorted(p.name for p in folder.iterdir()) == [layout.PART_FILE]  # no staged leftovers


def test_a_cold_build_equals_the_backfill_and_serves_the_next_day(tiny_world, tmp_path):
    backfilled, cold = tmp_path / "backfilled", tmp_path / "cold"
    shutil.copytree(tiny_world, backfilled)
    shutil.copytree(tiny_world, cold)
    days = raw_store.partition_days(backfilled)
    for day in days:
        build_features(backfilled, day)
    middle = days[len(days) // 2]
    # Day D from no rollups: every raw day of its window aggregated in this one build ...
    report = build_features(cold, middle)
    assert (report.rollup_days_computed, report.rollup_days_reused) == (report.raw_days, 0)
    for table, expected in _tables(backfilled, middle).items():
        assert _tables(cold, middle)[table].equals(expected), table  # bit for bit
    # ... and stored, so the next day (the daily job) aggregates only its own raw day.
    following = days[days.index(middle) + 1]
    nxt = build_features(cold, following)
    assert (nxt.rollup_days_computed, nxt.rollup_days_reused) == (1, nxt.raw_days - 1)
    for table, expected in _tables(backfilled, following).items():
        assert _tables(cold, following)[table].equals(expected), table
    # The rollups are a cache: uncompressed Arrow IPC (mapped back without a copy), no task
    # column repeating a base sum.
    path = layout.rollup_partition(cold, layout.USER_DAY_ROLLUP, middle)
    with pa.memory_map(str(path)) as source:
        user_day = pa.ipc.open_file(source).read_all()
    assert not [c for c in user_day.schema.names if c.startswith("task_")]


def test_builds_in_threads_and_in_a_forked_child_share_no_connection(built):
    """Builds share one in-memory DuckDB database per process, each on its own cursor: two
    threads build at once, and a child forked after a build (as a forking executor would)
    opens a database of its own instead of crashing on its parent's worker threads."""
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor

    days = raw_store.partition_days(built)[-2:]
    before = {day: _tables(built, day) for day in days}
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda day: build_features(built, day), days))
    for day in days:
        for table, expected in before[day].items():
            assert _tables(built, day)[table].equals(expected), (day, table)
    child = mp.get_context("fork").Process(target=build_features, args=(built, days[-1]))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    for table, expected in before[days[-1]].items():
        assert _tables(built, days[-1])[table].equals(expected), table
