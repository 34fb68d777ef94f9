"""`stanflow features`: the daily sequence, the person's lookup, the errors a user can cause."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from feature_repo import layout
from stanflow.cli import main

D = "2026-01-06"
PREVIOUS = "2026-01-05"


def _run(home: Path, *args: str):
    return CliRunner().invoke(main, ["--home", str(home), "features", *args])


@pytest.fixture(scope="module")
def home(tiny_world, tmp_path_factory) -> Path:
    """Days 5 and 6 built, day 6 validated and materialized, all through the command."""
    home = tmp_path_factory.mktemp("features_cli")
    shutil.copytree(tiny_world, home, dirs_exist_ok=True)
    for day in (PREVIOUS, D):
        result = _run(home, "build", "--date", day)
        assert result.exit_code == 0, result.output
        assert "users" in result.output and "user_features" in result.output
    result = _run(home, "validate", "--date", D)
    assert result.exit_code == 0, result.output
    assert "passed" in result.output and "index.html" in result.output
    result = _run(home, "materialize", "--date", D)
    assert result.exit_code == 0, result.output
    assert "sqlite online store" in result.output
    return home


def test_get_json_returns_the_offline_values_of_the_day(home):
    path = layout.feature_partition(home, layout.USER_TABLE, dt.date.fromisoformat(D))
    offline = pq.read_table(path).to_pylist()
    for row in offline[:5] + offline[-5:]:
        result = _run(home, "get", "--user-id", str(row["user_id"]), "--json")
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert payload["user_id"] == row["user_id"]
        assert payload["tasks"] == ["ctr", "stay", "cvr"]
        for name, value in payload["features"].items():
            assert value == row[name.split("__", 1)[1]], name
        assert payload["features"]["user_lifecycle__as_of_date"] == D


def test_get_for_a_person_names_the_day_and_the_tasks(home):
    result = _run(home, "get", "--user-id", "2")
    assert result.exit_code == 0, result.output
    assert f"as of the end of {D}" in result.output
    assert "lifecycle_stage" in result.output and "ctr=" in result.output


def test_get_with_date_reads_that_days_partition(home):
    result = _run(home, "get", "--item-id", "3", "--date", PREVIOUS, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["source"] == f"offline partition {PREVIOUS}"
    assert payload["features"]["item_stats__as_of_date"] == PREVIOUS


def test_unknown_user_and_bad_arguments_are_explained(home):
    result = _run(home, "get", "--user-id", "987654")
    assert result.exit_code == 1
    assert "987654 has no features" in result.output and "materialize" in result.output
    result = _run(home, "get", "--user-id", "1", "--item-id", "1")
    assert result.exit_code == 2 and "exactly one" in result.output
    result = _run(home, "build", "--date", "2031-01-01")
    assert result.exit_code == 1 and "stanflow simulate" in result.output


def test_materialize_refuses_a_day_that_was_not_validated(home):
    before = (layout.feast_dir(home) / "online.db").read_bytes()
    result = _run(home, "materialize", "--date", PREVIOUS)
    assert result.exit_code == 1
    assert "has not been validated" in result.output
    assert f"stanflow features validate --date {PREVIOUS}" in result.output
    assert (layout.feast_dir(home) / "online.db").read_bytes() == before


def test_training_set_command_writes_the_window(home):
    result = _run(home, "training-set", "--start", D, "--end", D)
    assert result.exit_code == 0, result.output
    assert "impressions" in result.output and "training_set.parquet" in result.output
    result = _run(home, "training-set", "--start", "2026-01-01", "--end", D)
    assert result.exit_code == 1 and "first day" in result.output


def test_lookup_in_a_home_without_a_registry_says_what_to_do(tiny_world, tmp_path):
    shutil.copytree(tiny_world / "raw", tmp_path / "raw")
    result = _run(tmp_path, "get", "--user-id", "1")
    assert result.exit_code == 1
    assert "no feature registry" in result.output and "materialize" in result.output
    assert not layout.feast_dir(tmp_path).exists()  # the lookup created nothing
