"""WeChat Big Data Challenge 2021 (WeChat Channels short video) -> the raw-data contract.

Upstream files, comma-separated with a header line:

``user_action.csv``, one row per exposure (impression) over 14 days::

    userid,feedid,date_,device,read_comment,comment,like,play,stay,click_avatar,forward,follow,favorite

``date_`` is a day number (1..14), ``device`` a small integer, ``play`` and ``stay`` are
milliseconds, and the seven action columns are 0/1.

``feed_info.csv``, one row per feed (video)::

    feedid,authorid,videoplayseconds,description,ocr,asr,bgm_song_id,bgm_singer_id,
    manual_keyword_list,machine_keyword_list,manual_tag_list,machine_tag_list,
    description_char,ocr_char,asr_char

Text columns hold space-separated token ids and tag/keyword lists hold ``;``-separated ids
(``81;8``); any of them may be empty. Only ``feedid``, ``authorid``, ``videoplayseconds`` and
``manual_tag_list`` are read; the rest must be present as fields but are not parsed.

Mapping:

* events: ``user_id=userid``, ``item_id=feedid``, ``event_id`` = data row index (0-based).
  The release has no time of day, so ``event_ts`` = ``start_date + (date_ - 1)`` days plus an
  offset that spreads the day's rows over the day in file order
  (``rank_in_day * 86399 // rows_that_day`` seconds): deterministic and order-preserving.
  ``session_id`` is one dense id per (userid, date_), numbered in (date_, userid) order;
  ``position`` is the row's rank in its session in file order (capped at 32767).
  ``click = play > 0``, ``stay_seconds = stay / 1000``, ``order = 0`` (no conversions). The
  seven action columns become extra int8 label columns of the same names.
* items (every feed in feed_info): ``category_id`` = first id of ``manual_tag_list`` (-1 when
  empty), ``author_id=authorid``, ``duration_s=videoplayseconds``, ``price=0``,
  ``created_ts`` = ``start_date`` midnight UTC (the release has no upload time).
* users (no user table upstream): every ``userid`` of the log; ``signup_ts`` = their first
  event, ``device_os`` = the ``device`` of that first event, the rest -1 (unknown).

Tasks: ``like``, ``click_avatar`` and ``forward`` by default; any of the seven action columns,
plus ``ctr`` (the ``click`` column), may be chosen instead.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stan_model.data.loaders._csv import (
    FLOAT,
    INT,
    STR,
    LoaderError,
    check_binary,
    check_pattern,
    check_range,
    check_unique,
    first_true,
    read_csv,
    require_file,
)
from stan_model.data.loaders._world import (
    US_PER_DAY,
    day_us,
    events_table,
    group_ranks,
    resolve_tasks,
    write_world,
)
from stan_model.schema import TS, WorldManifest

log = logging.getLogger(__name__)

USER_ACTION = "user_action.csv"
FEED_INFO = "feed_info.csv"
LABELS: tuple[str, ...] = (
    "read_comment",
    "comment",
    "like",
    "click_avatar",
    "forward",
    "follow",
    "favorite",
)
DEFAULT_TASKS: tuple[str, ...] = ("like", "click_avatar", "forward")
TASK_COLUMNS: dict[str, str] = {"ctr": "click", **{name: name for name in LABELS}}

ACTION_COLUMNS: dict[str, pa.DataType] = {
    "userid": INT,
    "feedid": INT,
    "date_": INT,
    "device": INT,
    "play": FLOAT,
    "stay": FLOAT,
    **{name: INT for name in LABELS},
}
FEED_COLUMNS: dict[str, pa.DataType] = {
    "feedid": INT,
    "authorid": INT,
    "videoplayseconds": FLOAT,
    "manual_tag_list": STR,
}
TAG_LIST = r"^([0-9]+(;[0-9]+)*)?$"  # empty, or ;-separated ids
INT32_MAX = 2**31 - 1
SECONDS_IN_DAY_MINUS_ONE = 86_399  # offsets stay inside the day

_WHERE = (
    "download the WeChat Big Data Challenge 2021 data set and pass the folder holding "
    f"{USER_ACTION} and {FEED_INFO}"
)


def load_wechat(
    source_dir: Path,
    home: Path,
    tasks: Sequence[str] | None = None,
    start_date: dt.date = dt.date(2021, 1, 1),
) -> WorldManifest:
    """Read ``user_action.csv`` and ``feed_info.csv`` from ``source_dir``; write the raw world.

    ``start_date`` is the calendar day of ``date_ == 1``. Returns the manifest written to
    ``home/raw/_world.json``. Raises :class:`LoaderError` for any problem in the files; row
    numbers count data rows from 1 (the header is row 0).
    """
    specs = resolve_tasks(tasks, DEFAULT_TASKS, TASK_COLUMNS, "wechat")
    if isinstance(start_date, dt.datetime) or not isinstance(start_date, dt.date):
        raise LoaderError(f"wechat: start_date must be a datetime.date, got {start_date!r}")
    source_dir = Path(source_dir)
    action_path = require_file(source_dir / USER_ACTION, _WHERE)
    feed_path = require_file(source_dir / FEED_INFO, _WHERE)

    actions = read_actions(action_path, start_date)
    feeds = read_feeds(feed_path)
    _check_feeds_known(action_path, feed_path, actions, feeds)

    events = _events(actions, start_date)
    details = {
        "source_dir": str(source_dir),
        "files": [USER_ACTION, FEED_INFO],
        "rows": {USER_ACTION: actions.num_rows, FEED_INFO: feeds.num_rows},
        "event_ts": "start_date + (date_ - 1) days, spread over the day in file order",
    }
    return write_world(
        home,
        "wechat",
        events,
        _users(events, actions),
        _items(feed_path, feeds, start_date),
        specs,
        list(LABELS),
        details,
    )


def read_actions(path: Path, start_date: dt.date) -> pa.Table:
    """user_action.csv, read strictly and checked value by value."""
    table = read_csv(path, ACTION_COLUMNS)
    last_day = (dt.date.max - start_date).days + 1  # keeps every event date representable
    check_range(path, table, "date_", 1, last_day, "a day number; day 1 is start_date")
    check_range(path, table, "device", 0, 127, "a small device code")
    for column in ("play", "stay"):
        check_range(path, table, column, 0, float("inf"), "a duration in milliseconds")
    for column in LABELS:
        check_binary(path, table, column)
    return table


def read_feeds(path: Path) -> pa.Table:
    """feed_info.csv (the four columns used), read strictly; one row per feedid."""
    table = read_csv(path, FEED_COLUMNS)
    check_unique(path, table, "feedid")
    check_range(path, table, "videoplayseconds", 0, float("inf"), "a length in seconds")
    check_pattern(path, table, "manual_tag_list", TAG_LIST, "';'-separated tag ids like '81;8'")
    return table


def _check_feeds_known(
    action_path: Path, feed_path: Path, actions: pa.Table, feeds: pa.Table
) -> None:
    """Every feedid of the log must be described in feed_info (items need its author, length)."""
    feed_ids = actions.column("feedid")
    unknown = pc.invert(pc.is_in(feed_ids, value_set=feeds.column("feedid").combine_chunks()))
    index = first_true(unknown)
    if index is None:
        return
    n_unknown = pc.count_distinct(pc.filter(feed_ids, unknown)).as_py()
    raise LoaderError(
        f"{action_path}: {n_unknown} feedid value(s) of column 'feedid' are missing from "
        f"{feed_path} (e.g. feedid {feed_ids[index].as_py()} at row {index + 1}). Use the "
        f"{FEED_INFO} released with this {USER_ACTION}."
    )


def _events(actions: pa.Table, start_date: dt.date) -> pa.Table:
    n = actions.num_rows
    row = np.arange(n, dtype=np.int64)
    day = actions.column("date_").to_numpy()
    user = actions.column("userid").to_numpy()

    day_group, rank_in_day = group_ranks([day], [row])
    rows_that_day = np.bincount(day_group)[day_group]
    offset_s = rank_in_day * SECONDS_IN_DAY_MINUS_ONE // rows_that_day
    ts_us = day_us(start_date) + (day - 1) * US_PER_DAY + offset_s * 1_000_000

    session, position = group_ranks([day, user], [row])
    play = actions.column("play").to_numpy()
    stay = actions.column("stay").to_numpy()
    return events_table(
        event_id=row,
        user_id=user,
        item_id=actions.column("feedid").to_numpy(),
        session_id=session,
        event_ts_us=ts_us,
        position=position,
        click=play > 0,
        stay_seconds=stay / 1000.0,
        labels={name: actions.column(name) for name in LABELS},
    )


def _users(events: pa.Table, actions: pa.Table) -> pa.Table:
    """One row per userid: first event time and that event's device."""
    user = events.column("user_id").to_numpy()
    ts_us = events.column("event_ts").cast(INT).to_numpy()
    _, rank = group_ranks([user], [ts_us, events.column("event_id").to_numpy()])
    first = rank == 0
    # events has not been re-sorted yet, so its rows line up with the actions rows.
    device = actions.column("device").to_numpy()[first]
    order = np.argsort(user[first], kind="stable")
    n = int(first.sum())
    unknown = np.full(n, -1, dtype=np.int8)
    return pa.table(
        {
            "user_id": pa.array(user[first][order], INT),
            "signup_ts": pa.array(ts_us[first][order], TS),
            "age_bucket": unknown,
            "gender": unknown,
            "device_os": pa.array(device[order].astype(np.int8)),
            "city_tier": unknown,
        }
    )


def _items(path: Path, feeds: pa.Table, start_date: dt.date) -> pa.Table:
    tags = feeds.column("manual_tag_list")
    first_tag = pc.list_element(pc.split_pattern(tags, ";", max_splits=1), 0)
    category = pc.cast(pc.if_else(pc.equal(first_tag, ""), "-1", first_tag), INT).to_numpy()
    if (category > INT32_MAX).any():
        index = int(np.flatnonzero(category > INT32_MAX)[0])
        raise LoaderError(
            f"{path}: row {index + 1}, column 'manual_tag_list': tag id {category[index]} "
            "does not fit a 32-bit category id; check the file is the upstream one."
        )
    n = feeds.num_rows
    return pa.table(
        {
            "item_id": feeds.column("feedid"),
            "category_id": pa.array(category.astype(np.int32)),
            "author_id": feeds.column("authorid"),
            "duration_s": pa.array(feeds.column("videoplayseconds").to_numpy(), pa.float32()),
            "price": pa.array(np.zeros(n, dtype=np.float32)),
            "created_ts": pa.array(np.full(n, day_us(start_date), dtype=np.int64), TS),
        }
    )
