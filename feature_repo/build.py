"""Lifecycle features of day D from the raw events: SQL on DuckDB, one Parquet partition per table.

Per user, as of the end of day D (DESIGN.md, data flow step 2): impressions, clicks, long stays,
orders, sessions and dwell over 1 / 7 / 30 days; CTR, long-stay rate and CVR; tenure and recency;
the rule-based lifecycle stage of :mod:`stan_model.lifecycle` (same rule, same medians: a test
compares the two); and the per-task label rates STAN uses as pseudo-labels. Per item: exposure,
clicks, reach and rates. Writing a day replaces its partition (atomic rename), never appends.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from feature_repo.contract import table_schema
from feature_repo.definitions import USER_COUNTS, USER_RATES, WINDOWS_DAYS
from feature_repo.layout import ITEM_TABLE, USER_TABLE, feature_partition
from stan_model.data import raw_store
from stan_model.lifecycle import NEW, NEW_USER_DAYS, WINDOW_DAYS
from stan_model.schema import DEFAULT_TASKS, LIFECYCLE_STAGES, TaskSpec

log = logging.getLogger(__name__)

# The long-stay label of the default task set (``stay``: stay_seconds >= 30), which the lifecycle
# rule and the long-stay features use whatever tasks a world trains on.
LONG_STAY_SECONDS = next(t.threshold for t in DEFAULT_TASKS if t.name == "stay")
UNSCORED = "unscored"
_LONGEST = max(WINDOWS_DAYS)
assert _LONGEST == WINDOW_DAYS, "the lifecycle rule reads the longest feature window"


@dataclass(frozen=True)
class BuildReport:
    day: dt.date
    users: int
    items: int
    raw_days: int  # event partitions read (the 30-day window, clipped to the data)
    seconds: float
    paths: tuple[Path, Path]


def _path_sql(path: Path) -> str:
    """A file path as an SQL string literal (a quote in a home path must not end the literal)."""
    return "'" + str(path).replace("'", "''") + "'"


def _label_sql(task: TaskSpec) -> str:
    col = f'"{task.column}"'
    return f"CAST({col} >= {task.threshold!r} AS INTEGER)" if task.threshold is not None else col


# The long-stay label, written as the ``stay`` task's label is: DuckDB computes identical aggregate
# expressions once, so a world whose tasks are click / long stay / order sums each column once.
_LONG_STAY_SQL = _label_sql(next(t for t in DEFAULT_TASKS if t.name == "stay"))


def _rate(num: str, den: str) -> str:
    return f"CASE WHEN {den} > 0 THEN CAST({num} AS DOUBLE) / {den} ELSE 0.0 END"


def _events_view(files: list[Path], day: dt.date, tasks: list[TaskSpec]) -> str:
    """Window events with ``lag`` = days before D (0 = D) taken from each file's dt= folder.

    A view, not a table: each aggregate streams only the columns it reads (reach, only the
    partitions of its 7 days), and the memory used does not grow with the window.
    """
    paths = ", ".join(_path_sql(p) for p in files)
    base = ("user_id", "item_id", "session_id", "click", "order", "stay_seconds")
    columns = ", ".join(f'"{c}"' for c in dict.fromkeys([*base, *(t.column for t in tasks)]))
    return f"""
        CREATE OR REPLACE TEMP VIEW window_events AS
        SELECT {columns}, CAST(date_diff('day', dt, DATE '{day}') AS INTEGER) AS lag
        FROM read_parquet([{paths}], hive_partitioning = true, hive_types = {{'dt': DATE}})
    """


def _label_sums(tasks: list[TaskSpec]) -> str:
    """The per-event sums both entities take: clicks, long stays, orders, dwell, task labels."""
    task_sums = "".join(f", sum({_label_sql(t)}) AS task_{k}" for k, t in enumerate(tasks))
    return (
        f'sum(click) AS clicks, sum({_LONG_STAY_SQL}) AS long_stays, sum("order") AS orders, '
        f"sum(CAST(stay_seconds AS DOUBLE)) AS dwell_seconds{task_sums}"
    )


def _user_sql(day: dt.date, users_file: Path, tasks: list[TaskSpec]) -> str:
    n_tasks = len(tasks)
    # (name, window, zero): every windowed sum, and the value a user without events gets.
    sums = [(f"{c}_{w}d", c, w, "0") for w in WINDOWS_DAYS for c in USER_COUNTS]
    sums += [(f"dwell_seconds_{w}d", "dwell_seconds", w, "0.0") for w in WINDOWS_DAYS]
    sums += [(f"task_{k}_{_LONGEST}d", f"task_{k}", _LONGEST, "0") for k in range(n_tasks)]
    windowed = ", ".join(
        f"sum({col}) FILTER (WHERE lag < {w}) AS {name}" for name, col, w, _ in sums
    )
    filled = ", ".join(f"coalesce(w.{name}, {zero}) AS {name}" for name, _, _, zero in sums)
    rates = ", ".join(
        f"{_rate(f'{num}_{w}d', f'impressions_{w}d')} AS {rate}_{w}d"
        for w in WINDOWS_DAYS
        for rate, num in zip(USER_RATES, ("clicks", "long_stays", "orders"), strict=True)
    )
    task_rates = ", ".join(
        _rate(f"task_{k}_{_LONGEST}d", f"impressions_{_LONGEST}d") for k in range(n_tasks)
    )
    stage_names = "".join(f" WHEN {i} THEN '{s}'" for i, s in enumerate(LIFECYCLE_STAGES))
    end_of_day = f"TIMESTAMPTZ '{day + dt.timedelta(days=1)} 00:00:00+00'"
    return f"""
    WITH daily AS (  -- one row per user and day: the only pass over the events
        SELECT user_id, lag, count(*) AS impressions,
               count(DISTINCT session_id) AS sessions, {_label_sums(tasks)}
        FROM window_events GROUP BY user_id, lag
    ),
    windows AS (
        SELECT user_id, {windowed},
               min(lag) AS last_impression_lag,
               min(lag) FILTER (WHERE clicks > 0) AS last_click_lag
        FROM daily GROUP BY user_id
    ),
    known AS (  -- every user signed up by the end of D, with or without impressions
        SELECT user_id, date_diff('day', CAST(signup_ts AS DATE), DATE '{day}') AS tenure_days
        FROM read_parquet({_path_sql(users_file)}) WHERE signup_ts < {end_of_day}
    ),
    rated AS (
        SELECT *, {rates},
               tenure_days >= {NEW_USER_DAYS} AND impressions_{_LONGEST}d > 0 AS scored
        FROM (SELECT k.user_id, k.tenure_days, w.last_impression_lag, w.last_click_lag, {filled}
              FROM known k LEFT JOIN windows w USING (user_id))
    ),
    medians AS (
        -- Lower median (quantile_disc): for values drawn from the scored set itself,
        -- x > median  <=>  x > lower median, whether the count is odd or even. This is exactly
        -- the np.median comparison of stan_model.lifecycle, without float interpolation.
        SELECT quantile_disc(cvr_{_LONGEST}d, 0.5) FILTER (WHERE scored) AS cvr_median,
               quantile_disc(long_stay_rate_{_LONGEST}d, 0.5) FILTER (WHERE scored)
                   AS long_stay_median
        FROM rated
    ),
    staged AS (
        SELECT r.*,
               CASE WHEN tenure_days < {NEW_USER_DAYS} THEN {NEW}
                    WHEN NOT scored THEN -1
                    WHEN cvr_{_LONGEST}d > m.cvr_median THEN {LIFECYCLE_STAGES.index("loyal")}
                    WHEN long_stay_rate_{_LONGEST}d > m.long_stay_median
                        THEN {LIFECYCLE_STAGES.index("stick")}
                    ELSE {LIFECYCLE_STAGES.index("wander")} END AS lifecycle_stage_id
        FROM rated r, medians m
    )
    SELECT *,
           CASE lifecycle_stage_id{stage_names} ELSE '{UNSCORED}' END AS lifecycle_stage,
           coalesce(last_impression_lag, {_LONGEST}) AS days_since_last_impression,
           coalesce(last_click_lag, {_LONGEST}) AS days_since_last_click,
           [{task_rates}]::DOUBLE[] AS task_rates_30d
    FROM staged ORDER BY user_id
    """


def _item_sql(day: dt.date, items_file: Path, tasks: list[TaskSpec]) -> str:
    # One aggregate per item straight from the events (items have no per-day feature such as
    # users' sessions, so no per-day step); reach, a distinct count over 7 days, is its own.
    windowed = {"impressions": "count(*)", "clicks": "sum(click)"}
    counts = ", ".join(
        f"{agg} FILTER (WHERE lag < {w}) AS {c}_{w}d"
        for c, agg in windowed.items()
        for w in WINDOWS_DAYS
    )
    filled = ", ".join(
        f"coalesce(a.{c}_{w}d, 0) AS {c}_{w}d" for c in windowed for w in WINDOWS_DAYS
    )
    task_rates = ", ".join(
        _rate(f"coalesce(a.task_{k}, 0)", f"coalesce(a.impressions_{_LONGEST}d, 0)")
        for k in range(len(tasks))
    )
    return f"""
    WITH agg AS (
        SELECT item_id, {counts}, {_label_sums(tasks)}
        FROM window_events GROUP BY item_id
    ),
    reach AS (
        SELECT item_id, count(DISTINCT user_id) AS users_7d
        FROM window_events WHERE lag < 7 GROUP BY item_id
    )
    SELECT i.item_id,
           date_diff('day', CAST(i.created_ts AS DATE), DATE '{day}') AS age_days,
           {filled},
           coalesce(r.users_7d, 0) AS users_7d,
           {_rate("coalesce(a.clicks_7d, 0)", "coalesce(a.impressions_7d, 0)")} AS ctr_7d,
           {_rate("coalesce(a.clicks_30d, 0)", "coalesce(a.impressions_30d, 0)")} AS ctr_30d,
           {_rate("coalesce(a.long_stays, 0)", "coalesce(a.impressions_30d, 0)")}
               AS long_stay_rate_30d,
           {_rate("coalesce(a.orders, 0)", "coalesce(a.impressions_30d, 0)")} AS cvr_30d,
           {_rate("coalesce(a.dwell_seconds, 0)", "coalesce(a.clicks_30d, 0)")}
               AS dwell_seconds_per_click_30d,
           [{task_rates}]::DOUBLE[] AS task_rates_30d
    FROM read_parquet({_path_sql(items_file)}) i
    LEFT JOIN agg a USING (item_id) LEFT JOIN reach r USING (item_id)
    WHERE i.created_ts < TIMESTAMPTZ '{day + dt.timedelta(days=1)} 00:00:00+00'
    ORDER BY i.item_id
    """


def _finish(result: pa.Table, table: str, day: dt.date) -> pa.Table:
    """Add the day's timestamp columns and cast to the table's contract (contract.py)."""
    n = result.num_rows
    end_of_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    result = result.append_column("as_of_date", pa.array([day.isoformat()] * n, pa.string()))
    result = result.append_column(
        "event_timestamp", pa.array([end_of_day] * n, pa.timestamp("us", tz="UTC"))
    )
    schema = table_schema(table)
    missing = [f.name for f in schema if f.name not in result.column_names]
    if missing:  # a bug in the SQL above, not in the data
        raise RuntimeError(f"feature SQL for {table} does not produce columns {missing}")
    return result.select(schema.names).cast(schema)


def build_features(home: str | Path, day: dt.date) -> BuildReport:
    """Compute day ``day``'s user and item features and write (replace) their partitions."""
    import duckdb

    home = Path(home)
    t0 = time.perf_counter()
    manifest = raw_store.read_manifest(home)
    today = raw_store.events_partition(home, day)
    if not today.exists():
        raise FileNotFoundError(
            f"{today}: no raw events for {day}. Simulate or load the world first "
            "(`stanflow simulate`), or pick a day that `stanflow world` lists."
        )
    window = [day - dt.timedelta(days=lag) for lag in range(_LONGEST)]
    files = [
        raw_store.events_partition(home, d)
        for d in window
        if raw_store.events_partition(home, d).exists()
    ]
    tasks = list(manifest.tasks)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # timestamptz -> date must use the UTC day
        con.execute(_events_view(files, day, tasks))
        users = con.sql(_user_sql(day, raw_store.users_path(home), tasks)).to_arrow_table()
        items = con.sql(_item_sql(day, raw_store.items_path(home), tasks)).to_arrow_table()
    finally:
        con.close()
    paths = []
    for table, result in ((USER_TABLE, users), (ITEM_TABLE, items)):
        path = feature_partition(home, table, day)
        raw_store.write_parquet(_finish(result, table, day), path)
        paths.append(path)
    report = BuildReport(
        day=day,
        users=users.num_rows,
        items=items.num_rows,
        raw_days=len(files),
        seconds=time.perf_counter() - t0,
        paths=(paths[0], paths[1]),
    )
    log.info(
        "features %s: %d users, %d items from %d raw day(s) in %.2f s",
        day,
        report.users,
        report.items,
        report.raw_days,
        report.seconds,
    )
    return report
