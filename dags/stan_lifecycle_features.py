"""
### stan_lifecycle_features

Daily: the day's raw partition is checked, STAN's lifecycle features are computed from it
(DuckDB), validated with Great Expectations, and only then materialized into the Feast online
store. Publishes the `stanflow-lifecycle-features` asset, which triggers `stan_retrain`.

Every task replaces what it writes (a day's feature partition, that day's online values), so a
rerun or a backfill of a date leaves the stores as one run would. A failed validation stops the
run before materialization and leaves Data Docs under `$STANFLOW_HOME/gx` explaining why.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, dag, get_current_context, task

FEATURES = Asset("stanflow-lifecycle-features")


def _day() -> dt.date:
    """The data day of this run: the logical date's UTC calendar day."""
    return get_current_context()["logical_date"].date()


@dag(
    dag_id="stan_lifecycle_features",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["stanflow", "features", "feast"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
)
def stan_lifecycle_features():
    @task
    def check_raw_partition() -> str:
        """The raw events of the day exist and meet the schema (errors name file and column)."""
        from stan_model.data import raw_store
        from stan_model.schema import read_table
        from stanflow.settings import get_settings

        day = _day()
        home = get_settings().home
        events = read_table(raw_store.events_partition(home, day), "events")
        return f"{day}: {events.num_rows} impressions"

    @task
    def build_features(_raw: str) -> str:
        from feature_repo.build import build_features as build
        from stanflow.settings import get_settings

        report = build(get_settings().home, _day())
        return f"{report.users} users, {report.items} items in {report.seconds:.1f} s"

    @task
    def validate_features(_built: str) -> str:
        """Raises (failing the run before materialization) when any expectation fails."""
        from feature_repo.validate import validate_features as validate
        from stanflow.settings import get_settings

        report = validate(get_settings().home, _day())
        return f"validated; Data Docs: {report.data_docs}"

    @task(outlets=[FEATURES])
    def materialize(_validated: str) -> str:
        from feature_repo.store import materialize as load_online
        from stanflow.settings import get_settings

        report = load_online(get_settings().home, _day())
        return f"{report.day} -> {report.online_store}"

    materialize(validate_features(build_features(check_raw_partition())))


stan_lifecycle_features()
