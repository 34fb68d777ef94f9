"""Point in time: an impression on day D is joined to features computed through D-1, never later.

The training set goes through Feast's ``get_historical_features``; these tests recompute what
"through D-1" means from the raw events and compare, so a leak of day D's own activity (which
holds the impression's own label) would show.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_repo import layout
from feature_repo.build import build_features
from feature_repo.training import historical_features, training_set
from stan_model.data import raw_store

FIRST = dt.date(2026, 1, 1)
START, END = dt.date(2026, 1, 2), dt.date(2026, 1, 14)


@pytest.fixture(scope="module")
def home(tiny_world, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("point_in_time")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in raw_store.partition_days(home):
        build_features(home, day)
    return home


@pytest.fixture(scope="module")
def joined(home):
    return training_set(home, START, END)


def _event_date(table: pa.Table) -> np.ndarray:
    return np.array(pc.strftime(table["event_timestamp"], format="%Y-%m-%d").to_pylist())


def _day_before(dates: np.ndarray) -> np.ndarray:
    return np.array([(dt.date.fromisoformat(d) - dt.timedelta(days=1)).isoformat() for d in dates])


def test_every_impression_sees_exactly_the_previous_days_features(joined):
    table = joined.table
    days = [START + dt.timedelta(days=k) for k in range((END - START).days + 1)]
    assert table.num_rows == raw_store.read_events(joined.path.parents[2], days).num_rows
    previous = _day_before(_event_date(table))
    for view in ("user_lifecycle", "item_stats"):
        as_of = np.array(table[f"{view}__as_of_date"].to_pylist())
        assert (as_of == previous).all(), view  # never the impression's own day, nor later


def test_joined_values_are_the_offline_rows_of_the_previous_day(home, joined):
    frame = joined.table.to_pandas()
    frame["previous"] = _day_before(_event_date(joined.table))
    warm = frame[~frame["user_cold_start"]]
    offline = pd.concat(
        pq.read_table(
            layout.feature_partition(home, layout.USER_TABLE, dt.date.fromisoformat(day))
        )
        .to_pandas()
        .assign(previous=day)
        for day in sorted(set(warm["previous"]))
    )
    reference = warm.merge(offline, on=["user_id", "previous"], how="left")
    assert len(reference) == len(warm)
    for view, feature in [
        ("user_activity", "impressions_30d"),
        ("user_activity", "clicks_7d"),
        ("user_activity", "ctr_30d"),
        ("user_lifecycle", "tenure_days"),
        ("user_lifecycle", "lifecycle_stage"),
    ]:
        got = reference[f"{view}__{feature}"].to_numpy()
        assert (got == reference[feature].to_numpy()).all(), feature


def test_no_impression_counts_its_own_day(home, joined):
    """Recount each user's impressions on D-1 from the raw log: the joined 1-day count equals it,
    while the same user's count on day D (which includes the impression) never leaks in."""
    table = joined.table
    events = raw_store.read_events(home)
    dates = np.array(pc.strftime(events["event_ts"], format="%Y-%m-%d").to_pylist())
    per_user_day: dict[tuple[int, str], int] = {}
    for user, day in zip(events["user_id"].to_pylist(), dates, strict=True):
        per_user_day[(user, day)] = per_user_day.get((user, day), 0) + 1
    previous = _day_before(_event_date(table))
    expected = [
        per_user_day.get((u, d), 0)
        for u, d in zip(table["user_id"].to_pylist(), previous, strict=True)
    ]
    assert table["user_activity__impressions_1d"].to_pylist() == expected


def test_cold_start_rows_are_users_who_signed_up_that_day(home, joined):
    table = joined.table.filter(joined.table["user_cold_start"])
    assert table.num_rows == joined.user_cold_start > 0
    users = pq.read_table(raw_store.users_path(home)).to_pandas().set_index("user_id")
    signup = users.loc[table["user_id"].to_pylist(), "signup_ts"].dt.strftime("%Y-%m-%d")
    assert (signup.to_numpy() == _event_date(table)).all()
    assert set(table["user_lifecycle__lifecycle_stage"].to_pylist()) == {"new"}
    assert set(table["user_activity__impressions_30d"].to_pylist()) == {0}


@pytest.mark.parametrize(
    ("moment", "expected_as_of"),
    [
        (dt.datetime(2026, 1, 8, 0, 0, 0, 0, tzinfo=dt.UTC), "2026-01-07"),
        (dt.datetime(2026, 1, 8, 23, 59, 59, 999999, tzinfo=dt.UTC), "2026-01-07"),
        (dt.datetime(2026, 1, 9, 0, 0, 0, 0, tzinfo=dt.UTC), "2026-01-08"),
    ],
    ids=["first-microsecond", "last-microsecond", "next-midnight"],
)
def test_day_boundaries(home, moment, expected_as_of):
    entities = pa.table(
        {
            "user_id": pa.array([2, 5], pa.int64()),
            "item_id": pa.array([3, 4], pa.int64()),
            "event_timestamp": pa.array([moment, moment], pa.timestamp("us", tz="UTC")),
        }
    )
    out = historical_features(home, entities)
    assert set(out["user_lifecycle__as_of_date"].to_pylist()) == {expected_as_of}
    assert set(out["item_stats__as_of_date"].to_pylist()) == {expected_as_of}


def test_a_missing_feature_day_is_an_error_not_a_stale_join(home, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    layout.feature_partition(copy, layout.USER_TABLE, dt.date(2026, 1, 6)).unlink()
    with pytest.raises(FileNotFoundError, match="stanflow features build --date 2026-01-06"):
        training_set(copy, dt.date(2026, 1, 5), dt.date(2026, 1, 8))
    with pytest.raises(ValueError, match="first day"):
        training_set(copy, FIRST, dt.date(2026, 1, 3))


def test_the_training_set_is_written_and_documented(home, joined):
    assert joined.path == layout.training_set_path(home, START, END)
    assert pq.read_table(joined.path).num_rows == joined.table.num_rows
    assert "training_set" in layout.data_docs_index(home).read_text()
