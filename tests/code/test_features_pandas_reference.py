"""The feature benchmark's pandas reference (bench/features_pandas.py) gives exactly what the DuckDB
build gives, every column of both tables on every day of the tiny world, and the benchmark's
equality check (bench/feature_build.py) would notice if it did not."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_repo import layout
from feature_repo.build import build_features
from stan_model.data import raw_store
from stan_model.schema import TaskSpec

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def bench():
    """bench/feature_build.py, imported as its script is run (its folder on sys.path)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        import feature_build  # noqa: PLC0415 (only importable with bench/ on the path)

        yield feature_build
    sys.modules.pop("feature_build", None)


@pytest.fixture(scope="module")
def both(tiny_world, tmp_path_factory, bench) -> tuple[Path, Path, list[dt.date]]:
    """The tiny world built by both implementations, every day, in order."""
    home = tmp_path_factory.mktemp("reference_duckdb")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    out = tmp_path_factory.mktemp("reference_pandas")
    days = raw_store.partition_days(home)
    for day in days:
        build_features(home, day)
        bench.build_features_pandas(home, day, out)
    return home, out, days


def test_pandas_reference_equals_the_duckdb_build_every_day(both, bench):
    home, out, days = both
    result = bench.check_equal(home, out, days)
    assert result["equal"], result["problems"]
    assert result["days_compared"] == len(days) == 14
    assert result["columns_compared"] == {
        table: len(pq.read_schema(layout.feature_partition(home, table, days[0])))
        for table in layout.FEATURE_TABLES
    }
    assert all(rows > 1000 for rows in result["rows_compared"].values())


def test_the_equality_check_is_not_vacuous(both, bench):
    home, out, days = both
    table = pq.read_table(layout.feature_partition(out, layout.USER_TABLE, days[-1]))
    assert bench.compare_tables(table, table)["equal"]

    def changed(name, value):
        column = table[name].to_pylist()
        column[7] = value(column[7])
        field = table.schema.field(name)  # same type and nullability: only the value differs
        index = table.schema.get_field_index(name)
        return table.set_column(index, field, pa.array(column, field.type))

    assert not bench.compare_tables(table, changed("clicks_7d", lambda v: v + 1))["equal"]
    assert not bench.compare_tables(table, changed("ctr_30d", lambda v: v + 1e-6))["equal"]
    assert not bench.compare_tables(table, changed("lifecycle_stage", lambda v: v + "x"))["equal"]
    tasks = changed("task_rates_30d", lambda v: [*v[:-1], v[-1] + 1e-6])
    assert not bench.compare_tables(table, tasks)["equal"]
    assert bench.compare_tables(table, changed("ctr_30d", lambda v: v * (1 + 1e-12)))["equal"]
    assert not bench.compare_tables(table, table.slice(1))["equal"]


def test_pandas_reference_follows_the_worlds_task_list(tiny_world, tmp_path, bench):
    """Tasks other than click / long stay / order: a lower stay threshold, a reordered list."""
    home = tmp_path / "world"
    shutil.copytree(tiny_world, home)
    manifest = raw_store.read_manifest(home)
    manifest.tasks = [
        TaskSpec("cvr", "order"),
        TaskSpec("glance", "stay_seconds", threshold=5.0),
        TaskSpec("stay", "stay_seconds", threshold=30.0),
    ]
    raw_store.write_manifest(home, manifest)
    days = raw_store.partition_days(home)[8:10]
    for day in days:
        build_features(home, day)
        bench.build_features_pandas(home, day, tmp_path / "pandas")
    result = bench.check_equal(home, tmp_path / "pandas", days)
    assert result["equal"], result["problems"]
    rates = pq.read_table(layout.feature_partition(home, layout.USER_TABLE, days[-1]))
    assert len(rates["task_rates_30d"][0].as_py()) == 3
