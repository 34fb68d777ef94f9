"""Lifecycle features of day D from the raw events: SQL on DuckDB, one Parquet partition per table.

Per user, as of the end of day D (DESIGN.md, data flow step 2): impressions, clicks, long stays,
orders, sessions and dwell over 1 / 7 / 30 days; CTR, long-stay rate and CVR; tenure and recency;
the rule-based lifecycle stage of :mod:`stan_model.lifecycle` (same rule, same medians: a test
compares the two); and the per-task label rates STAN uses as pseudo-labels. Per item: exposure,
clicks, reach and rates. Writing a day replaces its partitions (atomic rename), never appends.

**Per-raw-day rollups.** Consecutive days share 29 of their 30 window days, so the events are
aggregated once per raw day and the result kept under ``features/_rollups/`` (layout.py):

* ``user_day``: per user, impressions, distinct sessions and every per-event sum (clicks, long
  stays, orders, dwell, and one per task label that is not one of those: :func:`_label_sums`);
* ``item_day``: per item, impressions and the same sums;
* ``item_user_day``: the day's distinct (item_id, user_id) pairs;
* ``item_reach_day``: per item of day d, ``first_k`` = its users of d not seen with it on days
  d-k .. d-1 (k = 0 .. 6), computed from the ``item_user_day`` rollups of d-6 .. d.

Day D's features are then computed from the rollups of its window (at most 30 small tables)
instead of its raw events, with the same results: window sums are sums of daily sums; sessions
were already counted per day and summed; recency reads the days with impressions / clicks; and
the 7-day reach counts each (item, user) pair of D-6 .. D once, on the first of those days it
occurs: day D-lag contributes ``first_{6-lag}``, exactly the distinct count.

A build with several raw days lacking current rollups (the first build, or one after
``features/_rollups`` was deleted) computes them all in one pass on one DuckDB connection: each
raw day read once and aggregated by its own queries back to back (one query grouping every day by
``day`` as well was measured slower: its hash tables outgrow the caches), then every computed
rollup written in one batch. Rollups are a cache, read back whole: uncompressed Arrow IPC files,
memory-mapped back without a copy (Parquet, even uncompressed, is decoded into new memory, and a
fresh process -- as the daily job runs -- spent more time faulting that memory in than
aggregating it: 1.1 s of a 3.0 s build on a 4x wechat world).

**Staleness.** Each rollup records, in its schema metadata, what it was computed from: the raw
partition's size, mtime_ns, ctime_ns and inode, a SHA-256 of its Parquet footer (row groups,
column sizes and statistics) — for ``item_reach_day``, those of each of its 7 raw days — the
world's task list and :data:`ROLLUP_VERSION`. The build fingerprints every raw partition of the
window and recomputes a rollup whose record differs (a day rewritten by the simulator or
``stanflow load``, other tasks, another rollup format), that is missing or that cannot be read;
the rollup of a raw day that is gone is never read. Rollups are
written atomically (unique staged file, then rename), so concurrent builds sharing a raw day at
worst both compute it. Deleting ``features/_rollups`` only costs the next build the time to
recompute.

**Failures lose nothing.** Both tables are computed and cast before anything is written, then
written to staged files next to their partitions, and only once both are written renamed into
place (one rename each, back to back): bad input (an unreadable raw day, a schema the SQL cannot
use) leaves the day's feature partitions as they were.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_repo.contract import table_schema
from feature_repo.definitions import USER_COUNTS, USER_RATES, WINDOWS_DAYS
from feature_repo.layout import (
    ITEM_DAY_ROLLUP,
    ITEM_REACH_DAY_ROLLUP,
    ITEM_TABLE,
    ITEM_USER_DAY_ROLLUP,
    USER_DAY_ROLLUP,
    USER_TABLE,
    feature_partition,
    rollup_partition,
)
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
REACH_DAYS = 7  # items' users_7d: the only distinct count over several days

# Bump when a rollup's columns or meaning change: every stored rollup is then recomputed.
ROLLUP_VERSION = 3  # 2: no task column that repeats a base sum; 3: Arrow IPC files
_RECORD_KEY = b"stanflow.rollup"  # schema metadata: what the rollup was computed from
_RAW_COLUMNS = ("user_id", "item_id", "session_id", "click", "order", "stay_seconds")


_database = None
_database_lock = threading.Lock()


_inherited = []  # a forked child's copy of its parent's database: never used, never closed


def _forget_database() -> None:
    """In a forked child: open a database of its own on first use. The parent's is kept, not
    closed, since closing it would join worker threads that do not exist in the child."""
    global _database, _database_lock
    if _database is not None:
        _inherited.append(_database)
    _database, _database_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_database)


def _connect():
    """A new connection (a cursor) to this process's in-memory DuckDB database.

    Opening a database costs ~17 ms; a cursor of an open one ~10 us, and a backfill runs one
    build per day. Each build has its own cursor: its registered tables and settings are its
    own, and builds in concurrent threads do not share a connection. A forked child opens its
    own database (the parent's worker threads do not exist in it)."""
    global _database
    import duckdb

    with _database_lock:
        if _database is None:
            _database = duckdb.connect()
        con = _database.cursor()
    con.execute("SET TimeZone = 'UTC'")  # timestamptz -> date must use the UTC day
    return con


@dataclass(frozen=True)
class BuildReport:
    day: dt.date
    users: int
    items: int
    raw_days: int  # event partitions read (the 30-day window, clipped to the data)
    seconds: float
    paths: tuple[Path, Path]
    rollup_days_computed: int = 0  # raw days aggregated from their events in this build
    rollup_days_reused: int = 0  # raw days whose stored rollups were all current


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


def _label_sums(tasks: list[TaskSpec]) -> str:
    """The per-event sums both entities take: clicks, long stays, orders, dwell, and each task
    label that is not one of those (:func:`_task_source`: no column stored twice)."""
    task_sums = "".join(
        f", sum({_label_sql(t)}) AS task_{k}"
        for k, t in enumerate(tasks)
        if _task_source(k, t) == f"task_{k}"
    )
    return (
        f'sum(click) AS clicks, sum({_LONG_STAY_SQL}) AS long_stays, sum("order") AS orders, '
        f"sum(CAST(stay_seconds AS DOUBLE)) AS dwell_seconds{task_sums}"
    )


def _task_source(k: int, task: TaskSpec) -> str:
    """The rollup column to sum for task ``k``: a base sum when the label is the same expression
    (``ctr``: clicks, ``stay``: long stays, ``cvr``: orders), so the window sums it once."""
    same = {'"click"': "clicks", _LONG_STAY_SQL: "long_stays", '"order"': "orders"}
    return same.get(_label_sql(task), f"task_{k}")


def _window_sum(column: str, window: int) -> str:
    """A window's sum over rollup rows (every row is within the longest window: no filter)."""
    where = f" FILTER (WHERE lag < {window})" if window < _LONGEST else ""
    return f"sum({column}){where}"


def _user_sql(day: dt.date, users_file: Path, tasks: list[TaskSpec]) -> str:
    n_tasks = len(tasks)
    # (name, column, window, zero): every windowed sum, and the value a user without events gets.
    sums = [(f"{c}_{w}d", c, w, "0") for w in WINDOWS_DAYS for c in USER_COUNTS]
    sums += [(f"dwell_seconds_{w}d", "dwell_seconds", w, "0.0") for w in WINDOWS_DAYS]
    sums += [
        (f"task_{k}_{_LONGEST}d", _task_source(k, t), _LONGEST, "0") for k, t in enumerate(tasks)
    ]
    windowed = ", ".join(f"{_window_sum(col, w)} AS {name}" for name, col, w, _ in sums)
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
    WITH windows AS (  -- user_days: one row per user and day of the window (the user_day rollups)
        SELECT user_id, {windowed},
               min(lag) AS last_impression_lag,
               min(lag) FILTER (WHERE clicks > 0) AS last_click_lag
        FROM user_days GROUP BY user_id
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
    # item_days: one row per item and day of the window (the item_day rollups); item_reach_days:
    # per item and day of the last 7, the users first seen with the item within those 7 days.
    windowed = ("impressions", "clicks")
    counts = ", ".join(f"{_window_sum(c, w)} AS {c}_{w}d" for c in windowed for w in WINDOWS_DAYS)
    # Over the whole window: what _label_sums gives per day, summed.
    totals = ", ".join(
        f"{_window_sum(c, _LONGEST)} AS {name}"
        for name, c in [
            *((c, c) for c in ("long_stays", "orders", "dwell_seconds")),
            *((f"task_{k}", _task_source(k, t)) for k, t in enumerate(tasks)),
        ]
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
        SELECT item_id, {counts}, {totals}
        FROM item_days GROUP BY item_id
    ),
    reach AS (  -- each (item, user) pair of the 7 days counted on the first day it occurs
        SELECT item_id, sum(first_seen) AS users_7d FROM item_reach_days GROUP BY item_id
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
    end_of_day = np.datetime64(day + dt.timedelta(days=1), "us")
    result = result.append_column(
        "as_of_date", pa.array([day.isoformat()], pa.string()).take(np.zeros(n, np.int32))
    )
    result = result.append_column(
        "event_timestamp", pa.array(np.full(n, end_of_day), pa.timestamp("us", tz="UTC"))
    )
    schema = table_schema(table)
    missing = [f.name for f in schema if f.name not in result.column_names]
    if missing:  # a bug in the SQL above, not in the data
        raise RuntimeError(f"feature SQL for {table} does not produce columns {missing}")
    return result.select(schema.names).cast(schema)


# -- rollups -------------------------------------------------------------------------------------
def _rollup_sql(rollup: str, tasks: list[TaskSpec]) -> str:
    """One raw day (the ``raw_day`` relation) aggregated into ``rollup`` (rows in no set order)."""
    if rollup == USER_DAY_ROLLUP:
        return f"""
            SELECT user_id, count(*) AS impressions, count(DISTINCT session_id) AS sessions,
                   {_label_sums(tasks)}
            FROM raw_day GROUP BY user_id"""
    if rollup == ITEM_DAY_ROLLUP:
        return f"""
            SELECT item_id, count(*) AS impressions, {_label_sums(tasks)}
            FROM raw_day GROUP BY item_id"""
    assert rollup == ITEM_USER_DAY_ROLLUP, rollup
    return "SELECT DISTINCT item_id, user_id FROM raw_day"


def _integral(table: pa.Table) -> pa.Table:
    """DuckDB's integer sums (HUGEINT, decimal128(38, 0) in Arrow) as int64; overflow raises."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type) and field.type.scale == 0:
            table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
    return table


def _raw_fingerprint(f) -> dict:
    """What identifies the raw partition open as ``f``: its stat and a SHA-256 of its Parquet
    footer (every row group's column sizes and statistics), read from that same open file."""
    st = os.fstat(f.fileno())
    size = st.st_size
    f.seek(max(size - 8, 0))
    tail = f.read(8)
    footer = int.from_bytes(tail[:4], "little") if tail[4:] == b"PAR1" else 0
    span = min(size, footer + 8 if footer else 4096)  # not Parquet: its last bytes
    f.seek(size - span)
    return {
        "size": size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "footer_sha256": hashlib.sha256(f.read(span)).hexdigest(),
    }


def _read_raw(path: Path, columns: list[str]) -> tuple[pa.Table, dict]:
    """A raw partition's columns and the fingerprint of exactly the bytes they were read from."""
    with open(path, "rb") as f:
        fingerprint = _raw_fingerprint(f)
        f.seek(0)
        data = f.read()
        if _raw_fingerprint(f) != fingerprint:  # written in place while being read
            raise RuntimeError(f"{path} changed while it was read; build the day again")
    return pq.read_table(pa.BufferReader(data), columns=columns), fingerprint


def _record(rollup: str, day: dt.date, raw: dict, tasks: list[TaskSpec]) -> bytes:
    """Everything a rollup depends on; a stored rollup is used only if its record equals this."""
    return json.dumps(
        {
            "version": ROLLUP_VERSION,
            "rollup": rollup,
            "day": day.isoformat(),
            "raw": raw,
            "tasks": [[t.name, t.column, t.threshold] for t in tasks],
        },
        sort_keys=True,
    ).encode()


def _load_rollup(path: Path, record: bytes) -> pa.Table | None:
    """The stored rollup at ``path`` if it was computed from what ``record`` describes.

    Memory-mapped, zero copy: the table's buffers are the file's pages in the OS page cache, so
    loading a window's rollups allocates (and page-faults in) nothing new; a fresh process, as
    the daily job runs, otherwise spent more time faulting in copies than aggregating them."""
    try:
        with pa.memory_map(str(path)) as source:  # the buffers keep the mapping alive
            table = pa.ipc.open_file(source).read_all()
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException) as exc:  # a torn or foreign file: recompute it
        log.warning("rollup %s unreadable (%s); recomputing it", path, exc)
        return None
    if (table.schema.metadata or {}).get(_RECORD_KEY) != record:
        return None
    return table.replace_schema_metadata(None)


def _write_rollup(table: pa.Table, path: Path) -> None:
    """A rollup is a cache read back whole by the next builds: an uncompressed Arrow IPC file
    (its own schema metadata holding the record), which :func:`_load_rollup` maps without
    copying."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))


def _write_replacing(items: list[tuple[pa.Table, Path]], rollups: bool = False) -> None:
    """Write every table to a unique staged file beside its path, then rename them all into place:
    nothing is replaced unless every table was written; concurrent writers never share a file.
    Feature partitions use the raw store's writer options; ``rollups`` :func:`_write_rollup`'s."""
    staged = [
        (path.with_name(f".{path.name}.{uuid.uuid4().hex}.staged"), path) for _, path in items
    ]

    def write(table: pa.Table, tmp: Path) -> None:
        if rollups:
            tmp.parent.mkdir(parents=True, exist_ok=True)
            _write_rollup(table, tmp)
        else:
            raw_store.write_parquet(table, tmp)  # the raw store's writer options, temp file

    try:
        # Parquet and Arrow encoding release the GIL: two tables are encoded side by side. The
        # pool is left (every write finished or failed) before anything is renamed.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, [table for table, _ in items], [tmp for tmp, _ in staged]))
        for tmp, path in staged:
            os.replace(tmp, path)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
            tmp.with_name(f".{tmp.name}.tmp").unlink(missing_ok=True)


def _reach_sql(has_earlier: bool) -> str:
    """Per item of day d (``pairs``: its distinct (item, user) pairs), ``first_k`` = the users not
    seen with the item on days d-k .. d-1 (``earlier``: the pairs of those of d-6 .. d-1 that
    exist, with ``gap`` = days before d), k = 0 .. 6; ``first_0`` = all the day's users."""
    firsts = ", ".join(
        f"count(*) FILTER (WHERE s.gap IS NULL OR s.gap > {k}) AS first_{k}"
        for k in range(REACH_DAYS)
    )
    if not has_earlier:
        return f"""
            SELECT c.item_id, {firsts} FROM pairs c, (SELECT CAST(NULL AS INTEGER) AS gap) s
            GROUP BY c.item_id"""
    return f"""
        WITH seen AS (  -- pairs of d also seen on an earlier day: the latest such day's gap
            SELECT c.item_id, c.user_id, min(e.gap) AS gap
            FROM pairs c JOIN earlier e USING (item_id, user_id) GROUP BY ALL
        )
        SELECT c.item_id, {firsts}
        FROM pairs c LEFT JOIN seen s USING (item_id, user_id)
        GROUP BY c.item_id"""


def _with_lag(table: pa.Table, lag: int, name: str = "lag") -> pa.Table:
    return table.append_column(name, pa.array(np.full(table.num_rows, lag, np.int32)))


class _Rollups:
    """The rollups one build reads: each loaded if its stored record is current, else computed
    (from the raw partition, read once per day whatever rollups of it are missing) and stored."""

    def __init__(self, con, home: Path, tasks: list[TaskSpec]):
        self.con, self.home, self.tasks = con, home, tasks
        self.columns = list(dict.fromkeys([*_RAW_COLUMNS, *(t.column for t in tasks)]))
        self.fingerprints: dict[dt.date, dict | None] = {}
        self.tables: dict[tuple[str, dt.date], pa.Table] = {}
        self.computed: set[dt.date] = set()  # raw days read (their events aggregated)
        self.pending: list[tuple[pa.Table, Path]] = []  # computed, to be written

    def fingerprint(self, day: dt.date) -> dict | None:
        """The raw partition's fingerprint; None when the day has none."""
        if day not in self.fingerprints:
            try:
                with open(raw_store.events_partition(self.home, day), "rb") as f:
                    self.fingerprints[day] = _raw_fingerprint(f)
            except FileNotFoundError:
                self.fingerprints[day] = None
        return self.fingerprints[day]

    def _load(self, rollup: str, day: dt.date, raw: dict) -> pa.Table | None:
        table = _load_rollup(
            rollup_partition(self.home, rollup, day), _record(rollup, day, raw, self.tasks)
        )
        if table is not None:
            self.tables[rollup, day] = table
        return table

    def _keep(self, rollups: dict[str, pa.Table], day: dt.date, raw: dict) -> None:
        """Use freshly computed rollups in this build and stage them for :meth:`write`."""
        for rollup, table in rollups.items():
            self.tables[rollup, day] = table
            record = {_RECORD_KEY: _record(rollup, day, raw, self.tasks)}
            self.pending.append(
                (table.replace_schema_metadata(record), rollup_partition(self.home, rollup, day))
            )

    def write(self) -> None:
        """Store every rollup computed in this build: all staged, then renamed into place."""
        _write_replacing(self.pending, rollups=True)
        self.pending = []

    def ensure(self, wanted: dict[dt.date, list[str]]) -> None:
        """Make the single-day rollups ``wanted[day]`` of each raw day (which exists) current:
        the stored ones are loaded if current; every day with one missing or stale is read once,
        all such days in one pass (one connection, the day's rollups computed back to back)."""
        todo = {}
        for day, rollups in wanted.items():
            fingerprint = self.fingerprint(day)
            missing = [
                r
                for r in rollups
                if (r, day) not in self.tables and self._load(r, day, fingerprint) is None
            ]
            if missing:
                todo[day] = missing
        for day, missing in todo.items():
            path = raw_store.events_partition(self.home, day)
            raw, read = _read_raw(path, self.columns)
            if read != self.fingerprint(day):  # rollups of it already read would not match
                raise RuntimeError(f"{path} was replaced during the build; build the day again")
            self.con.register("raw_day", raw)
            try:
                fresh = {
                    r: _integral(self.con.sql(_rollup_sql(r, self.tasks)).to_arrow_table())
                    for r in missing
                }
            finally:
                self.con.unregister("raw_day")
            self._keep(fresh, day, read)
            self.computed.add(day)

    def reach_sources(self, day: dt.date) -> list[dt.date]:
        """The raw days an item_reach_day rollup of ``day`` is computed from: it and the 6 before,
        those that exist."""
        back = (day - dt.timedelta(days=g) for g in range(REACH_DAYS))
        return [d for d in back if self.fingerprint(d) is not None]

    def _reach_record_raw(self, day: dt.date) -> dict:
        return {d.isoformat(): self.fingerprint(d) for d in self.reach_sources(day)}

    def missing_reach(self, days: list[dt.date]) -> list[dt.date]:
        """Of ``days``, those whose item_reach_day rollup is not current (the others loaded)."""
        return [
            d
            for d in days
            if self._load(ITEM_REACH_DAY_ROLLUP, d, self._reach_record_raw(d)) is None
        ]

    def compute_reach(self, day: dt.date) -> None:
        """Compute and store day ``day``'s item_reach_day rollup from the pair rollups of its
        source days (made current before)."""
        earlier = [
            _with_lag(self.tables[ITEM_USER_DAY_ROLLUP, d], (day - d).days, "gap")
            for d in self.reach_sources(day)
            if d != day
        ]
        self.con.register("pairs", self.tables[ITEM_USER_DAY_ROLLUP, day])
        if earlier:
            self.con.register("earlier", pa.concat_tables(earlier))
        try:
            reach = self.con.sql(_reach_sql(bool(earlier))).to_arrow_table()
        finally:
            self.con.unregister("pairs")
            if earlier:
                self.con.unregister("earlier")
        self._keep({ITEM_REACH_DAY_ROLLUP: reach}, day, self._reach_record_raw(day))


def _window_rollups(
    con, home: Path, window: list[tuple[int, dt.date]], tasks: list[TaskSpec]
) -> tuple[dict[str, pa.Table], int, int]:
    """The rollups of the window's raw days as the relations the feature SQL reads
    (``user_days``, ``item_days``, ``item_reach_days``), and how many raw days' events were read
    in this build / how many window days were served entirely by stored rollups."""
    rollups = _Rollups(con, home, tasks)
    missing_reach = rollups.missing_reach([d for lag, d in window if lag < REACH_DAYS])
    wanted = {d: [USER_DAY_ROLLUP, ITEM_DAY_ROLLUP] for _, d in window}
    for day in missing_reach:
        for source in rollups.reach_sources(day):  # within the window: at most 12 days back
            if ITEM_USER_DAY_ROLLUP not in wanted[source]:
                wanted[source].append(ITEM_USER_DAY_ROLLUP)
    rollups.ensure(wanted)
    for day in missing_reach:
        rollups.compute_reach(day)
    rollups.write()
    relations = {
        "user_days": pa.concat_tables(
            _with_lag(rollups.tables[USER_DAY_ROLLUP, d], lag) for lag, d in window
        ),
        "item_days": pa.concat_tables(
            _with_lag(rollups.tables[ITEM_DAY_ROLLUP, d], lag) for lag, d in window
        ),
        # Day D - lag's users first seen within D - 6 .. D: those not seen on its 6 - lag days
        # before (the pairs of D - 6 .. D, each counted once).
        "item_reach_days": pa.concat_tables(
            rollups.tables[ITEM_REACH_DAY_ROLLUP, d]
            .select(["item_id", f"first_{REACH_DAYS - 1 - lag}"])
            .rename_columns(["item_id", "first_seen"])
            for lag, d in window
            if lag < REACH_DAYS
        ),
    }
    computed = len(rollups.computed)
    return relations, computed, sum(1 for _, d in window if d not in rollups.computed)


def build_features(home: str | Path, day: dt.date) -> BuildReport:
    """Compute day ``day``'s user and item features and write (replace) their partitions.

    Reads the rollups of the 30-day window's raw days, computing (and storing) those missing or
    stale first; see the module docstring.
    """
    home = Path(home)
    t0 = time.perf_counter()
    manifest = raw_store.read_manifest(home)
    today = raw_store.events_partition(home, day)
    if not today.exists():
        raise FileNotFoundError(
            f"{today}: no raw events for {day}. Simulate or load the world first "
            "(`stanflow simulate`), or pick a day that `stanflow world` lists."
        )
    window = [
        (lag, d)
        for lag, d in ((lag, day - dt.timedelta(days=lag)) for lag in range(_LONGEST))
        if raw_store.events_partition(home, d).exists()
    ]
    tasks = list(manifest.tasks)
    con = _connect()
    try:
        relations, computed, reused = _window_rollups(con, home, window, tasks)
        for name, table in relations.items():
            con.register(name, table)
        users = con.sql(_user_sql(day, raw_store.users_path(home), tasks)).to_arrow_table()
        items = con.sql(_item_sql(day, raw_store.items_path(home), tasks)).to_arrow_table()
    finally:
        con.close()
    # Both tables cast before either is written, and written together: a failure keeps the day.
    written = [
        (_finish(result, table, day), feature_partition(home, table, day))
        for table, result in ((USER_TABLE, users), (ITEM_TABLE, items))
    ]
    _write_replacing(written)
    report = BuildReport(
        day=day,
        users=users.num_rows,
        items=items.num_rows,
        raw_days=len(window),
        seconds=time.perf_counter() - t0,
        paths=(written[0][1], written[1][1]),
        rollup_days_computed=computed,
        rollup_days_reused=reused,
    )
    log.info(
        "features %s: %d users, %d items from %d raw day(s) (rollups: %d computed, %d reused) "
        "in %.2f s",
        day,
        report.users,
        report.items,
        report.raw_days,
        report.rollup_days_computed,
        report.rollup_days_reused,
        report.seconds,
    )
    return report
