import datetime as dt

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stan_model.data import raw_store
from stan_model.schema import (
    DEFAULT_TASKS,
    EVENTS_SCHEMA,
    SchemaError,
    TaskSpec,
    WorldManifest,
    read_table,
    task_labels,
)


def _events(n=3, **replace):
    cols = {
        "event_id": pa.array(range(n), pa.int64()),
        "user_id": pa.array([1] * n, pa.int64()),
        "item_id": pa.array(range(n), pa.int64()),
        "session_id": pa.array([7] * n, pa.int64()),
        "event_ts": pa.array(
            [dt.datetime(2026, 1, 1, 10, i, tzinfo=dt.UTC) for i in range(n)],
            pa.timestamp("us", tz="UTC"),
        ),
        "position": pa.array(range(n), pa.int16()),
        "click": pa.array([1, 0, 1][:n], pa.int8()),
        "stay_seconds": pa.array([45.0, 0.0, 3.0][:n], pa.float32()),
        "order": pa.array([1, 0, 0][:n], pa.int8()),
    }
    cols.update(replace)
    return pa.table({k: v for k, v in cols.items() if v is not None})


def test_valid_file_round_trips(tmp_path):
    path = tmp_path / "part-0.parquet"
    pq.write_table(_events(), path)
    table = read_table(path, "events")
    assert table.schema.equals(EVENTS_SCHEMA, check_metadata=False)


def test_lossless_widening_is_accepted(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(_events(user_id=pa.array([1, 2, 3], pa.int32())), path)
    assert read_table(path, "events")["user_id"].type == pa.int64()


@pytest.mark.parametrize(
    ("replace", "column", "problem"),
    [
        ({"click": None}, "click", "missing column"),
        ({"user_id": pa.array(["a", "b", "c"])}, "user_id", "has type string"),
        ({"item_id": pa.array([1, None, 3], pa.int64())}, "item_id", "null value"),
        ({"event_ts": pa.array([1, 2, 3], pa.timestamp("us"))}, "event_ts", "expected timestamp"),
        ({"like": pa.array([0.5, 1.0, 0.0])}, "like", "extra label column"),
    ],
)
def test_violations_name_file_and_column(tmp_path, replace, column, problem):
    path = tmp_path / "dt=2026-01-01" / "part-0.parquet"
    path.parent.mkdir()
    pq.write_table(_events(**replace), path)
    with pytest.raises(SchemaError) as err:
        read_table(path, "events")
    assert err.value.column == column
    assert str(path) in str(err.value) and f"'{column}'" in str(err.value)
    assert problem in str(err.value)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(SchemaError, match="bad.parquet: not a readable Parquet file"):
        read_table(bad, "items")
    with pytest.raises(SchemaError, match="no such file"):
        read_table(tmp_path / "nope.parquet", "users")


def test_task_labels_threshold_and_binary():
    events = _events()
    assert task_labels(events, DEFAULT_TASKS[0]).to_pylist() == [1, 0, 1]
    assert task_labels(events, TaskSpec("stay", "stay_seconds", 30.0)).to_pylist() == [1, 0, 0]


def test_manifest_round_trip(tmp_path):
    m = WorldManifest("simulator", list(DEFAULT_TASKS), "2026-01-01", "2026-01-02", 1, 2, 3)
    raw_store.write_manifest(tmp_path, m)
    assert raw_store.read_manifest(tmp_path) == m


def test_missing_manifest_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="stanflow simulate"):
        raw_store.read_manifest(tmp_path)


def test_badly_named_partition_is_reported(tmp_path):
    (tmp_path / "raw" / "events" / "dt=yesterday").mkdir(parents=True)
    (tmp_path / "raw" / "events" / "dt=yesterday" / "part-0.parquet").write_bytes(b"")
    with pytest.raises(SchemaError, match="dt=YYYY-MM-DD"):
        raw_store.partition_days(tmp_path)
