"""The Great Expectations suites catch broken inputs, and a failed suite reaches no online store.

Each case starts from a home whose day D-1 is validated and materialized, breaks day D's raw
partition (then rebuilds D's features from it) or D's feature partition, and runs the daily
sequence validate -> materialize. Validation must fail naming the expectation and the column;
materialization must refuse; the online store must be byte-for-byte what it was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_repo import layout
from feature_repo.build import build_features
from feature_repo.store import NotValidatedError, get_online_features, materialize
from feature_repo.validate import FeatureValidationError, validate_features
from stan_model.data import raw_store

PREVIOUS = dt.date(2026, 1, 9)
D = dt.date(2026, 1, 10)
PROBE_USERS = [0, 2, 5, 40]


@pytest.fixture(scope="module")
def pristine(tiny_world, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("suites_pristine")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in (PREVIOUS, D):
        build_features(home, day)
    validate_features(home, PREVIOUS)
    materialize(home, PREVIOUS)
    return home


def _online_db(home: Path) -> str:
    return hashlib.sha256((layout.feast_dir(home) / "online.db").read_bytes()).hexdigest()


def _rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def _set(table: pa.Table, column: str, index: int, value, type_=None) -> pa.Table:
    values = table[column].to_pylist()
    values[index] = value
    position = table.column_names.index(column)
    return table.set_column(
        position, column, pa.array(values, type_ or table.schema.field(column).type)
    )


def _shift_to_future(table: pa.Table) -> pa.Table:
    ts = table["event_ts"].to_pylist()
    ts[:5] = [t + dt.timedelta(days=400) for t in ts[:5]]
    return table.set_column(
        table.column_names.index("event_ts"), "event_ts", pa.array(ts, table["event_ts"].type)
    )


RAW, USERS, ITEMS = "raw", layout.USER_TABLE, layout.ITEM_TABLE
# (case, which file, the corruption, the suite, the expectation, the column or None for the table)
CASES = [
    (
        "null key",
        USERS,
        lambda t: _set(t, "user_id", 3, None),
        USERS,
        "expect_column_values_to_not_be_null",
        "user_id",
    ),
    (
        "negative dwell",
        RAW,
        lambda t: _set(t, "stay_seconds", 7, -12.5),
        "raw_events",
        "expect_column_values_to_be_between",
        "stay_seconds",
    ),
    (
        "rate above one",
        USERS,
        lambda t: _set(t, "ctr_7d", 1, 1.5),
        USERS,
        "expect_column_values_to_be_between",
        "ctr_7d",
    ),
    (
        "item rate above one",
        ITEMS,
        lambda t: _set(t, "cvr_30d", 0, 2.0),
        ITEMS,
        "expect_column_values_to_be_between",
        "cvr_30d",
    ),
    (
        "duplicate user-day",
        USERS,
        lambda t: pa.concat_tables([t, t.slice(4, 1)]),
        USERS,
        "expect_compound_columns_to_be_unique",
        "user_id, as_of_date",
    ),
    (
        "missing column",
        USERS,
        lambda t: t.drop_columns(["sessions_7d"]),
        USERS,
        "expect_column_to_exist",
        "sessions_7d",
    ),
    (
        "wrong dtype",
        USERS,
        lambda t: t.set_column(
            t.column_names.index("impressions_7d"),
            "impressions_7d",
            pc.cast(t["impressions_7d"], pa.float64()),
        ),
        USERS,
        "expect_column_values_to_be_of_type",
        "impressions_7d",
    ),
    (
        "empty partition",
        RAW,
        lambda t: t.slice(0, 0),
        "raw_events",
        "expect_table_row_count_to_be_between",
        None,
    ),
    (
        "90% volume drop",
        RAW,
        lambda t: t.slice(0, t.num_rows // 10),
        "raw_events",
        "expect_table_row_count_to_be_between",
        None,
    ),
    (
        "future timestamps",
        RAW,
        _shift_to_future,
        "raw_events",
        "expect_column_max_to_be_between",
        "event_ts",
    ),
]


@pytest.mark.parametrize(
    ("target", "corrupt", "suite", "expectation", "column"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_a_corrupted_input_is_caught_and_never_materialized(
    pristine, tmp_path, target, corrupt, suite, expectation, column
):
    home = tmp_path / "home"
    shutil.copytree(pristine, home)
    online_before = _online_db(home)
    if target == RAW:
        _rewrite(raw_store.events_partition(home, D), corrupt)
        build_features(home, D)  # the daily run builds from what landed
    else:
        _rewrite(layout.feature_partition(home, target, D), corrupt)

    with pytest.raises(FeatureValidationError) as caught:
        validate_features(home, D)
    found = {(f.suite, f.expectation, f.column) for f in caught.value.failures}
    assert (suite, expectation, column) in found, found
    message = str(caught.value)
    assert expectation in message
    assert (f"column '{column}'" if column else "the table") in message
    assert "nothing was materialized" in message

    with pytest.raises(NotValidatedError, match="failed"):
        materialize(home, D)
    assert _online_db(home) == online_before
    rows = get_online_features(home, "user", PROBE_USERS)
    assert {r["user_lifecycle__as_of_date"] for r in rows} == {PREVIOUS.isoformat()}


def test_a_clean_day_passes_writes_data_docs_and_materializes(pristine, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(pristine, home)
    report = validate_features(home, D)
    assert report.success and not report.failures
    index = layout.data_docs_index(home)
    assert index == report.data_docs and index.exists()
    html = index.read_text()
    for suite in ("raw_events", "user_features", "item_features"):
        assert suite in html
    materialize(home, D)
    rows = get_online_features(home, "user", PROBE_USERS)
    assert {r["user_lifecycle__as_of_date"] for r in rows} == {D.isoformat()}


def test_a_partition_changed_after_validation_is_not_materialized(pristine, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(pristine, home)
    validate_features(home, D)
    _rewrite(layout.feature_partition(home, USERS, D), lambda t: _set(t, "ctr_30d", 0, 0.5))
    with pytest.raises(NotValidatedError, match="changed after it was validated"):
        materialize(home, D)


def test_the_training_set_suite_catches_a_point_in_time_leak(pristine, tmp_path):
    """Feed the suite a joined row whose features describe the impression's own day."""
    from feature_repo.gx_runner import gx_context, run_suite
    from feature_repo.suites import training_set_suite

    frame = pa.table(
        {
            "event_id": [1, 2],
            "user_id": [5, 6],
            "item_id": [7, 8],
            "event_timestamp": pa.array(
                [dt.datetime(2026, 1, 10, 9, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")
            ),
            "event_date": ["2026-01-10", "2026-01-10"],
            "label_ctr": [0, 1],
            "user_lifecycle__as_of_date": ["2026-01-09", "2026-01-10"],  # row 2 leaks
            "item_stats__as_of_date": ["2026-01-09", "2026-01-09"],
            "user_activity__ctr_7d": [0.1, 0.2],
        }
    ).to_pandas()
    failures = run_suite(
        gx_context(tmp_path),
        training_set_suite(["ctr"], ["user_activity__ctr_7d"]),
        frame,
        {
            "window_start": dt.datetime(2026, 1, 10, tzinfo=dt.UTC),
            "window_last": dt.datetime(2026, 1, 10, 23, 59, 59, tzinfo=dt.UTC),
        },
    )
    assert [(f.expectation, f.column) for f in failures] == [
        (
            "expect_column_pair_values_a_to_be_greater_than_b",
            "event_date > user_lifecycle__as_of_date",
        )
    ]
