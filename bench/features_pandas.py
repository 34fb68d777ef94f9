"""The lifecycle features of ``feature_repo/build.py``, written the way one would first write them
in pandas: the benchmark's reference implementation (``bench/feature_build.py``).

Same inputs (the raw Parquet partitions of the 30-day window ending with day D, ``users.parquet``,
``items.parquet``, the world's tasks), same features, same edge rules, same output contract:

* windows of 1 / 7 / 30 days ending with D inclusive, a row's day taken from its ``dt=`` folder;
* sessions counted per day (distinct ``session_id`` per user and day, summed over the window);
* rates per impression, 0 without impressions; dwell per click, 0 without clicks;
* every user signed up (item created) before the end of D gets a row, with zeros when silent;
* tenure / age = D minus the UTC signup (creation) date; recency = days since the last day with an
  impression (a click), 30 when none in the window;
* the rule-based stage of ``stan_model.lifecycle``: new below 7 days of tenure; unscored (-1) when
  silent for the window; else loyal above the median 30-day CVR of the scored users, else stick
  above their median long-stay rate, else wander (``Series.median``: the interpolated median,
  which splits a set exactly as the lower median the SQL uses does);
* ``task_rates_30d``: each world task's label rate over 30 days, in the manifest's task order.

Plain pandas throughout (``read_parquet``, ``groupby().agg``, ``merge``): no DuckDB, no hand-made
numpy kernels. Only the last step, the cast to the table contract and the Parquet write, is shared
with ``build.py`` so both write byte-comparable partitions.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from feature_repo.build import LONG_STAY_SECONDS, UNSCORED, _finish
from feature_repo.definitions import USER_COUNTS, WINDOWS_DAYS
from feature_repo.layout import ITEM_TABLE, USER_TABLE, feature_partition
from stan_model.data import raw_store
from stan_model.lifecycle import NEW_USER_DAYS
from stan_model.schema import LIFECYCLE_STAGES

LONGEST = max(WINDOWS_DAYS)
EVENT_COLUMNS = ["user_id", "item_id", "session_id", "click", "order", "stay_seconds"]


def _rate(num: pd.Series, den: pd.Series) -> pd.Series:
    """num / den as float64, 0 where den is 0."""
    return (num / den).where(den > 0, 0.0)


def load_window(home: Path, day: dt.date) -> tuple[pd.DataFrame, list[str]]:
    """Events of the 30 days ending with ``day`` (those that exist), with ``lag`` = days before D
    and one 0/1 column per label (``long_stay``, ``task_0`` ...). Returns the task columns too."""
    tasks = raw_store.read_manifest(home).tasks
    frames = []
    for lag in range(LONGEST):
        path = raw_store.events_partition(home, day - dt.timedelta(days=lag))
        if path.exists():
            columns = sorted({*EVENT_COLUMNS, *(t.column for t in tasks)})
            frame = pd.read_parquet(path, columns=columns)
            frame["lag"] = lag
            frames.append(frame)
    events = pd.concat(frames, ignore_index=True)
    events["long_stay"] = (events["stay_seconds"] >= LONG_STAY_SECONDS).astype("int64")
    events["dwell_seconds"] = events["stay_seconds"].astype("float64")
    task_columns = []
    for k, task in enumerate(tasks):
        label = events[task.column]
        if task.threshold is not None:
            label = label >= task.threshold
        events[f"task_{k}"] = label.astype("int64")
        task_columns.append(f"task_{k}")
    return events, task_columns


def _windowed(daily: pd.DataFrame, key: str, columns: list[str], windows) -> pd.DataFrame:
    """Per ``key``, the sum of each daily column over each trailing window: ``<col>_<w>d``."""
    parts = []
    for w in windows:
        sums = daily[daily["lag"] < w].groupby(key)[columns].sum()
        parts.append(sums.add_suffix(f"_{w}d"))
    return pd.concat(parts, axis=1).fillna(0)


def user_features(home: Path, day: dt.date, events: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    daily = (
        events.groupby(["user_id", "lag"])
        .agg(
            impressions=("item_id", "size"),
            clicks=("click", "sum"),
            long_stays=("long_stay", "sum"),
            orders=("order", "sum"),
            sessions=("session_id", "nunique"),
            dwell_seconds=("dwell_seconds", "sum"),
            **{t: (t, "sum") for t in tasks},
        )
        .reset_index()
    )
    counts = _windowed(daily, "user_id", [*USER_COUNTS, "dwell_seconds"], WINDOWS_DAYS)
    task_sums = daily.groupby("user_id")[tasks].sum()  # the whole (30-day) window
    last_impression = daily.groupby("user_id")["lag"].min().rename("days_since_last_impression")
    last_click = (
        daily[daily["clicks"] > 0].groupby("user_id")["lag"].min().rename("days_since_last_click")
    )

    users = pd.read_parquet(raw_store.users_path(home), columns=["user_id", "signup_ts"])
    end_of_day = pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
    users = users[users["signup_ts"] < end_of_day]
    signup_day = users["signup_ts"].dt.floor("D")
    users = pd.DataFrame(
        {
            "user_id": users["user_id"],
            "tenure_days": (pd.Timestamp(day, tz="UTC") - signup_day).dt.days.astype("int64"),
        }
    )
    df = (
        users.set_index("user_id")
        .join([counts, task_sums, last_impression, last_click], how="left")
        .reset_index()
    )
    for column in [*counts.columns, *tasks]:
        df[column] = df[column].fillna(0)
        if not column.startswith("dwell_seconds"):
            df[column] = df[column].astype("int64")
    for column in ("days_since_last_impression", "days_since_last_click"):
        df[column] = df[column].fillna(LONGEST).astype("int64")

    for w in WINDOWS_DAYS:
        impressions = df[f"impressions_{w}d"]
        df[f"ctr_{w}d"] = _rate(df[f"clicks_{w}d"], impressions)
        df[f"long_stay_rate_{w}d"] = _rate(df[f"long_stays_{w}d"], impressions)
        df[f"cvr_{w}d"] = _rate(df[f"orders_{w}d"], impressions)

    # The lifecycle rule (stan_model.lifecycle): medians over the scored users of this day.
    new = df["tenure_days"] < NEW_USER_DAYS
    scored = ~new & (df[f"impressions_{LONGEST}d"] > 0)
    cvr, long_stay_rate = df[f"cvr_{LONGEST}d"], df[f"long_stay_rate_{LONGEST}d"]
    loyal = scored & (cvr > cvr[scored].median())
    stick = scored & ~loyal & (long_stay_rate > long_stay_rate[scored].median())
    stage = LIFECYCLE_STAGES.index
    df["lifecycle_stage_id"] = np.select(
        [new, ~scored, loyal, stick],
        [stage("new"), -1, stage("loyal"), stage("stick")],
        default=stage("wander"),
    )
    stage_names = dict(enumerate(LIFECYCLE_STAGES)) | {-1: UNSCORED}
    df["lifecycle_stage"] = df["lifecycle_stage_id"].map(stage_names)

    impressions = df[f"impressions_{LONGEST}d"]
    rates = pd.concat([_rate(df[t], impressions) for t in tasks], axis=1)
    df["task_rates_30d"] = list(rates.to_numpy())
    return df.sort_values("user_id")


def item_features(home: Path, day: dt.date, events: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    daily = (
        events.groupby(["item_id", "lag"])
        .agg(
            impressions=("user_id", "size"),
            clicks=("click", "sum"),
            long_stays=("long_stay", "sum"),
            orders=("order", "sum"),
            dwell_seconds=("dwell_seconds", "sum"),
            **{t: (t, "sum") for t in tasks},
        )
        .reset_index()
    )
    counts = _windowed(daily, "item_id", ["impressions", "clicks"], WINDOWS_DAYS)
    totals = daily.groupby("item_id")[["long_stays", "orders", "dwell_seconds", *tasks]].sum()
    reach = events[events["lag"] < 7].groupby("item_id")["user_id"].nunique().rename("users_7d")

    items = pd.read_parquet(raw_store.items_path(home), columns=["item_id", "created_ts"])
    items = items[items["created_ts"] < pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")]
    age = (pd.Timestamp(day, tz="UTC") - items["created_ts"].dt.floor("D")).dt.days
    df = (
        pd.DataFrame({"item_id": items["item_id"], "age_days": age.astype("int64")})
        .set_index("item_id")
        .join([counts, totals, reach], how="left")
        .reset_index()
    )
    for column in df.columns:
        if column != "dwell_seconds" and column not in ("item_id", "age_days"):
            df[column] = df[column].fillna(0).astype("int64")
    df["dwell_seconds"] = df["dwell_seconds"].fillna(0.0)

    impressions_7d, impressions_30d = df["impressions_7d"], df["impressions_30d"]
    df["ctr_7d"] = _rate(df["clicks_7d"], impressions_7d)
    df["ctr_30d"] = _rate(df["clicks_30d"], impressions_30d)
    df["long_stay_rate_30d"] = _rate(df["long_stays"], impressions_30d)
    df["cvr_30d"] = _rate(df["orders"], impressions_30d)
    df["dwell_seconds_per_click_30d"] = _rate(df["dwell_seconds"], df["clicks_30d"])
    rates = pd.concat([_rate(df[t], impressions_30d) for t in tasks], axis=1)
    df["task_rates_30d"] = list(rates.to_numpy())
    return df.sort_values("item_id")


def compute_features_pandas(home: str | Path, day: dt.date) -> tuple[pa.Table, pa.Table]:
    """Day ``day``'s user and item tables, cast to the contract (not written)."""
    home = Path(home)
    events, tasks = load_window(home, day)
    users = user_features(home, day, events, tasks)
    items = item_features(home, day, events, tasks)
    return tuple(
        _finish(pa.Table.from_pandas(frame, preserve_index=False), table, day)
        for table, frame in ((USER_TABLE, users), (ITEM_TABLE, items))
    )


def build_features_pandas(home: str | Path, day: dt.date, out: str | Path) -> tuple[Path, Path]:
    """Compute day ``day`` and write its partitions under the data home ``out`` (not ``home``,
    so the DuckDB build's partitions there stay as they are)."""
    users, items = compute_features_pandas(home, day)
    paths = []
    for table, result in ((USER_TABLE, users), (ITEM_TABLE, items)):
        path = feature_partition(Path(out), table, day)
        raw_store.write_parquet(result, path)
        paths.append(path)
    return paths[0], paths[1]
