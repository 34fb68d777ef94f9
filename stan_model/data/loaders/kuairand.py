"""KuaiRand (Kuaishou short-video logs; the Pure, 1K and 27K releases) -> the raw-data contract.

Upstream files, comma-separated with a header line:

``log_standard_*.csv``, one row per exposure (one or more files, e.g.
``log_standard_4_08_to_4_21_pure.csv`` and ``log_standard_4_22_to_5_08_pure.csv``; read in name
order and concatenated)::

    user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,
    is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,
    is_profile_enter,is_rand,tab

``date`` is the local calendar day as ``20220408``, ``hourmin`` a local clock time like ``1000``,
``time_ms`` the Unix epoch in milliseconds; ``is_*`` and ``long_view`` are 0/1.

``user_features*.csv`` (exactly one file, e.g. ``user_features_pure.csv``)::

    user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,
    follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,
    friend_user_num_range,register_days,register_days_range,onehot_feat0,...,onehot_feat17

Several columns are strings (``high_active``, ``0-10``, ``UNKNOWN``) and onehot values may be
empty; only ``user_id`` and ``register_days`` are read.

Mapping:

* events: ``event_ts`` from ``time_ms`` (UTC); the partition is its UTC day. ``event_id`` = row
  index over the concatenated logs (0-based). ``click=is_click``,
  ``stay_seconds=play_time_ms / 1000``, ``order=0``; extra int8 labels ``like``, ``follow``,
  ``comment``, ``forward``, ``hate`` (from ``is_*``) and ``long_view``. ``session_id`` is one dense
  id per (user_id, date) in (date, user_id) order, ``position`` the rank in the session by time
  (capped at 32767).
* items (every video of the logs): ``duration_s = duration_ms / 1000`` of its earliest event,
  ``created_ts`` = its earliest event, ``category_id = author_id = -1``, ``price = 0``.
* users: every user of user_features plus any log user missing from it. ``signup_ts`` = the
  dataset's first event day (midnight UTC) minus ``register_days`` days, or the user's first
  event when the user has no features row; profile attributes are -1 (unknown).

Tasks: ``ctr`` (``click``), ``like`` and ``long_view`` by default; any extra label may be chosen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from stan_model.data.loaders._csv import (
    FLOAT,
    INT,
    LoaderError,
    check_binary,
    check_range,
    check_unique,
    read_csv,
)
from stan_model.data.loaders._world import (
    US_PER_DAY,
    events_table,
    group_ranks,
    resolve_tasks,
    write_world,
)
from stan_model.schema import TS, WorldManifest

log = logging.getLogger(__name__)

LOG_GLOB = "log_standard_*.csv"
USER_GLOB = "user_features*.csv"
# upstream label column -> events column
LABELS: dict[str, str] = {
    "is_like": "like",
    "is_follow": "follow",
    "is_comment": "comment",
    "is_forward": "forward",
    "is_hate": "hate",
    "long_view": "long_view",
}
DEFAULT_TASKS: tuple[str, ...] = ("ctr", "like", "long_view")
TASK_COLUMNS: dict[str, str] = {"ctr": "click", **{name: name for name in LABELS.values()}}

LOG_COLUMNS: dict[str, pa.DataType] = {
    "user_id": INT,
    "video_id": INT,
    "date": INT,
    "time_ms": INT,
    "is_click": INT,
    **{column: INT for column in LABELS},
    # Milliseconds, but read as floats: some exports write them as 45400.0.
    "play_time_ms": FLOAT,
    "duration_ms": FLOAT,
}
USER_COLUMNS: dict[str, pa.DataType] = {"user_id": INT, "register_days": INT}
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last representable day
MAX_REGISTER_DAYS = 36_500

_WHERE = "download KuaiRand (Pure, 1K or 27K) and pass the folder holding its data/*.csv files"


def load_kuairand(
    source_dir: Path, home: Path, tasks: Sequence[str] | None = None
) -> WorldManifest:
    """Read the ``log_standard_*.csv`` logs and ``user_features*.csv``; write the raw world.

    Returns the manifest written to ``home/raw/_world.json``. Raises :class:`LoaderError` for any
    problem in the files; row numbers count a file's data rows from 1 (the header is row 0).
    """
    specs = resolve_tasks(tasks, DEFAULT_TASKS, TASK_COLUMNS, "kuairand")
    source_dir = Path(source_dir)
    log_paths = _log_paths(source_dir)
    user_path = _user_features_path(source_dir)

    per_file = {path.name: read_log(path) for path in log_paths}
    logs = pa.concat_tables(per_file.values())  # zero-copy: the files' chunks, in name order
    features = read_user_features(user_path)
    events = _events(logs)
    rows = {name: table.num_rows for name, table in per_file.items()}
    details = {
        "source_dir": str(source_dir),
        "files": [*per_file, user_path.name],
        "rows": {**rows, user_path.name: features.num_rows},
    }
    return write_world(
        home,
        "kuairand",
        events,
        _users(events, features),
        _items(events, logs),
        specs,
        list(LABELS.values()),
        details,
    )


def _log_paths(source_dir: Path) -> list[Path]:
    if not source_dir.is_dir():
        raise LoaderError(f"{source_dir}: folder not found; {_WHERE}")
    paths = sorted(p for p in source_dir.glob(LOG_GLOB) if p.is_file())
    if not paths:
        found = sorted(p.name for p in source_dir.glob("*.csv"))
        raise LoaderError(
            f"{source_dir / LOG_GLOB}: file not found (no file matches; .csv files here: {found}); "
            f"{_WHERE}"
        )
    return paths


def _user_features_path(source_dir: Path) -> Path:
    paths = sorted(p for p in source_dir.glob(USER_GLOB) if p.is_file())
    if len(paths) != 1:
        problem = "file not found" if not paths else f"{len(paths)} files match: {paths}"
        raise LoaderError(
            f"{source_dir / USER_GLOB}: {problem}; keep exactly the user_features file of the "
            "release whose logs are here"
        )
    return paths[0]


def read_log(path: Path) -> pa.Table:
    """One log_standard file, read strictly and checked value by value."""
    table = read_csv(path, LOG_COLUMNS)
    check_range(path, table, "time_ms", 0, MAX_TIME_MS, "Unix epoch milliseconds")
    check_range(path, table, "date", 19_700_101, 99_991_231, "a day as YYYYMMDD")
    check_range(path, table, "play_time_ms", 0, float("inf"), "milliseconds")
    check_range(path, table, "duration_ms", 0, float("inf"), "milliseconds")
    for column in ("is_click", *LABELS):
        check_binary(path, table, column)
    return table


def read_user_features(path: Path) -> pa.Table:
    """user_features: user_id and register_days, one row per user."""
    table = read_csv(path, USER_COLUMNS)
    check_unique(path, table, "user_id")
    check_range(path, table, "register_days", 0, MAX_REGISTER_DAYS, "days since sign-up")
    return table


def _events(logs: pa.Table) -> pa.Table:
    n = logs.num_rows
    row = np.arange(n, dtype=np.int64)
    user = logs.column("user_id").to_numpy()
    ts_us = logs.column("time_ms").to_numpy() * 1000
    session, position = group_ranks([logs.column("date").to_numpy(), user], [ts_us, row])
    return events_table(
        event_id=row,
        user_id=user,
        item_id=logs.column("video_id").to_numpy(),
        session_id=session,
        event_ts_us=ts_us,
        position=position,
        click=logs.column("is_click").to_numpy(),
        stay_seconds=logs.column("play_time_ms").to_numpy() / 1000.0,
        labels={name: logs.column(column) for column, name in LABELS.items()},
    )


def _first_rows(keys: np.ndarray, events: pa.Table) -> np.ndarray:
    """Boolean mask of each key's earliest event (ties broken by event_id)."""
    ts_us = events.column("event_ts").cast(INT).to_numpy()
    _, rank = group_ranks([keys], [ts_us, events.column("event_id").to_numpy()])
    return rank == 0


def _users(events: pa.Table, features: pa.Table) -> pa.Table:
    user = events.column("user_id").to_numpy()
    ts_us = events.column("event_ts").cast(INT).to_numpy()
    first_day_us = int(ts_us.min()) // US_PER_DAY * US_PER_DAY
    first = _first_rows(user, events)

    featured = features.column("user_id").to_numpy()
    featured_signup = first_day_us - features.column("register_days").to_numpy() * US_PER_DAY
    unfeatured = ~np.isin(user[first], featured)
    user_ids = np.concatenate([featured, user[first][unfeatured]])
    signup = np.concatenate([featured_signup, ts_us[first][unfeatured]])
    if unfeatured.any():
        log.warning("%d log user(s) have no user_features row", int(unfeatured.sum()))

    order = np.argsort(user_ids, kind="stable")
    unknown = np.full(len(user_ids), -1, dtype=np.int8)
    return pa.table(
        {
            "user_id": pa.array(user_ids[order], INT),
            "signup_ts": pa.array(signup[order], TS),
            "age_bucket": unknown,
            "gender": unknown,
            "device_os": unknown,
            "city_tier": unknown,
        }
    )


def _items(events: pa.Table, logs: pa.Table) -> pa.Table:
    video = events.column("item_id").to_numpy()
    first = _first_rows(video, events)
    # events has not been re-sorted yet, so its rows line up with the log rows.
    duration_s = logs.column("duration_ms").to_numpy()[first] / 1000.0
    created = events.column("event_ts").cast(INT).to_numpy()[first]
    order = np.argsort(video[first], kind="stable")
    n = len(order)
    return pa.table(
        {
            "item_id": pa.array(video[first][order], INT),
            "category_id": pa.array(np.full(n, -1, dtype=np.int32)),
            "author_id": pa.array(np.full(n, -1, dtype=np.int64)),
            "duration_s": pa.array(duration_s[order].astype(np.float32)),
            "price": pa.array(np.zeros(n, dtype=np.float32)),
            "created_ts": pa.array(created[order], TS),
        }
    )
