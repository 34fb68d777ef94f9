"""``stanflow features``: build, validate, materialize and look up STAN's lifecycle features.

Each command calls one plain function of ``feature_repo`` (the same ones the DAGs and pipeline
components call). Feast, DuckDB and Great Expectations are imported inside the commands.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import click

from stanflow.settings import Settings

_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


def _day(value: dt.datetime) -> dt.date:
    return value.date()


@click.group()
@click.pass_context
def features(ctx: click.Context) -> None:
    """Lifecycle features: build (DuckDB), validate (Great Expectations), serve (Feast).

    A daily run is `build`, then `validate`, then `materialize` for the same --date;
    `materialize` refuses a day whose validation did not pass on exactly the files there now.
    """
    if _settings(ctx).log_level != "DEBUG":
        # Feast and GX narrate every registry refresh and store access at INFO: keep the
        # command's output about stanflow.
        for name in ("feast", "great_expectations"):
            logging.getLogger(name).setLevel(logging.WARNING)


@features.command()
@click.option("--date", "date", type=_DATE, required=True, help="Day D (YYYY-MM-DD).")
@click.pass_context
def build(ctx: click.Context, date: dt.datetime) -> None:
    """Compute day D's user and item features from the raw events (replaces the partitions)."""
    from feature_repo.build import build_features

    try:
        report = build_features(_settings(ctx).home, _day(date))
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"features {report.day}: {report.users:,} users, {report.items:,} items from "
        f"{report.raw_days} raw day(s) in {report.seconds:.2f} s\n"
        + "\n".join(f"  {p}" for p in report.paths)
    )


@features.command()
@click.option("--date", "date", type=_DATE, required=True, help="Day D (YYYY-MM-DD).")
@click.pass_context
def validate(ctx: click.Context, date: dt.datetime) -> None:
    """Check day D's raw partition and features with the Great Expectations suites.

    Exits 1 and lists every failed expectation (suite, expectation, column) when one fails.
    Data Docs are written under $STANFLOW_HOME/gx/uncommitted/data_docs/local_site/.
    """
    from feature_repo.validate import FeatureValidationError, validate_features

    try:
        report = validate_features(_settings(ctx).home, _day(date))
    except (FeatureValidationError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"validation of {report.day} passed\n  Data Docs: {report.data_docs}")


@features.command()
@click.option("--date", "date", type=_DATE, required=True, help="Day D (YYYY-MM-DD).")
@click.pass_context
def materialize(ctx: click.Context, date: dt.datetime) -> None:
    """Load day D's validated features into the online store (SQLite, or Redis if configured)."""
    from feature_repo.store import NotValidatedError
    from feature_repo.store import materialize as run

    settings = _settings(ctx)
    try:
        report = run(settings.home, _day(date), settings)
    except NotValidatedError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"materialized {report.day} into the {report.online_store} online store: "
        f"{', '.join(report.feature_views)}"
    )


@features.command()
@click.option("--start", type=_DATE, required=True, help="First day (YYYY-MM-DD).")
@click.option("--end", type=_DATE, required=True, help="Last day, inclusive.")
@click.pass_context
def backfill(ctx: click.Context, start: dt.datetime, end: dt.datetime) -> None:
    """Build and validate every day from --start to --end, then materialize them in one go.

    Nothing reaches the online store unless every day's validation passed; the stores end as
    after running the daily features DAG for each day in order.
    """
    from tqdm import tqdm

    from feature_repo.build import build_features
    from feature_repo.store import NotValidatedError
    from feature_repo.store import materialize as run
    from feature_repo.validate import FeatureValidationError, validate_features

    settings = _settings(ctx)
    first, last = _day(start), _day(end)
    if first > last:
        raise click.BadParameter(f"--start {first} is after --end {last}", param_hint="--start")
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    try:
        for day in tqdm(days, desc="build + validate", unit="day"):
            build_features(settings.home, day)
            validate_features(settings.home, day)
        report = run(settings.home, last, settings, first_day=first)
    except (FeatureValidationError, FileNotFoundError, NotValidatedError) as exc:
        raise click.ClickException(f"{exc}\n(nothing was materialized)") from exc
    click.echo(
        f"backfilled {first} .. {last} ({len(days)} days) into the {report.online_store} "
        f"online store: {', '.join(report.feature_views)}"
    )


def _format(value: Any, tasks: list[str]) -> str:
    if isinstance(value, list):
        if len(value) == len(tasks):
            return "  ".join(f"{t}={v:.4g}" for t, v in zip(tasks, value, strict=True))
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@features.command()
@click.option("--user-id", type=int, help="Look up this user.")
@click.option("--item-id", type=int, help="Look up this item.")
@click.option(
    "--date",
    "date",
    type=_DATE,
    help="Read day D's offline partition instead of the online store.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def get(ctx, user_id: int | None, item_id: int | None, date, as_json: bool) -> None:
    """Look up one user's (or item's) features: online store by default, offline with --date.

    Task rates (STAN's pseudo-labels) are listed in the world's task order (raw/_world.json).
    """
    from feature_repo.store import get_offline_features, get_online_features
    from stan_model.data import raw_store

    if (user_id is None) == (item_id is None):
        raise click.UsageError("give exactly one of --user-id or --item-id")
    settings = _settings(ctx)
    entity, key = ("user", user_id) if user_id is not None else ("item", item_id)
    try:
        tasks = [t.name for t in raw_store.read_manifest(settings.home).tasks]
        if date is not None:
            row = get_offline_features(settings.home, entity, [key], _day(date))[0]
            source = f"offline partition {_day(date)}"
        else:
            row = get_online_features(settings.home, entity, [key], settings)[0]
            source = f"online store ({settings.online_store})"
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    values = {k: v for k, v in row.items() if "__" in k}
    if all(v is None for v in values.values()):
        where = (
            f"day {_day(date)}'s partition"
            if date is not None
            else "the online store (materialize a day first: "
            "`stanflow features materialize --date D`)"
        )
        raise click.ClickException(f"{entity} {key} has no features in {where}")
    if as_json:
        payload = {f"{entity}_id": key, "source": source, "tasks": tasks, "features": values}
        click.echo(json.dumps(payload, indent=2, sort_keys=False))
        return
    as_of = next((v for k, v in values.items() if k.endswith("__as_of_date")), "?")
    click.echo(f"{entity} {key}: {source}, as of the end of {as_of}")
    view = None
    for name, value in values.items():
        this_view, feature = name.split("__", 1)
        if this_view != view:
            click.echo(f"  {this_view}")
            view = this_view
        click.echo(f"    {feature:28s} {_format(value, tasks)}")


@features.command("training-set")
@click.option("--start", type=_DATE, required=True, help="First impression day (YYYY-MM-DD).")
@click.option("--end", type=_DATE, required=True, help="Last impression day, inclusive.")
@click.pass_context
def training_set_cmd(ctx, start: dt.datetime, end: dt.datetime) -> None:
    """Join the impressions of a window to the previous day's features (point in time)."""
    from feature_repo.training import training_set
    from feature_repo.validate import FeatureValidationError

    settings = _settings(ctx)
    try:
        result = training_set(settings.home, _day(start), _day(end), settings)
    except (FeatureValidationError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"training set {result.start} .. {result.end}: {result.table.num_rows:,} impressions, "
        f"{result.table.num_columns} columns ({result.user_cold_start:,} cold-start users, "
        f"{result.item_cold_start:,} cold-start items)\n  {result.path}"
    )
