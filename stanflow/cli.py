"""The ``stanflow`` command: one entry point over every layer.

Heavy imports (torch, pyarrow, Feast, KFP) happen inside each command, so ``stanflow --help`` is
instant and a broken optional layer cannot stop the others from working.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from stanflow.settings import Settings, SettingsError

log = logging.getLogger("stanflow")


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--home", type=click.Path(path_type=Path), help="Data home (overrides STANFLOW_HOME)."
)
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """stanflow: retraining system for STAN, the lifecycle-aware multi-task recommender.

    Settings come from STANFLOW_* environment variables; `stanflow settings` lists them.
    """
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    # Torch loads inside the commands, after this: see components.runner.OMP_WAIT_POLICY.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if home is not None:
        settings = settings.model_copy(update={"home": home.resolve()})
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = {"settings": settings}


@main.command("settings")
@click.pass_context
def settings_cmd(ctx: click.Context) -> None:
    """Show every STANFLOW_* setting: its current value, default and meaning."""
    current = _settings(ctx)
    for var, default, description in Settings.describe():
        value = getattr(current, var.removeprefix("STANFLOW_").lower())
        shown = "(unset)" if value is None else value
        click.echo(f"{var:26s} = {shown}\n    default: {default}. {description}")


@main.command()
@click.option(
    "--preset",
    type=click.Choice(["tiny", "small", "wechat"]),
    default=None,
    help="World preset (default: STANFLOW_PRESET, which defaults to 'small').",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A world YAML file instead of a preset (see stan_model/data/presets/).",
)
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Override the number of days."
)
@click.option(
    "--users", type=click.IntRange(min=1), default=None, help="Override the number of users."
)
@click.pass_context
def simulate(ctx, preset, config_path, seed, days, users) -> None:
    """Simulate a lifecycle world and write it under the data home.

    Writes raw/events/dt=*/ (one Parquet partition per day), raw/users.parquet,
    raw/items.parquet, raw/_world.json, and the latent stages to truth/user_stage/ (never into
    the raw events). Same config and seed give byte-identical files; partitions are replaced.
    """
    from stan_model.data.simulator import write_world
    from stan_model.data.world_config import WorldConfig

    settings = _settings(ctx)
    if preset and config_path:
        raise click.UsageError("give --preset or --config, not both")
    try:
        cfg = (
            WorldConfig.from_yaml(config_path)
            if config_path
            else WorldConfig.preset(preset or settings.preset)
        )
        overrides = {
            k: v
            for k, v in {"seed": seed, "n_days": days, "n_users": users}.items()
            if v is not None
        }
        if overrides:
            cfg = cfg.with_overrides(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    report = write_world(cfg, settings.home, progress=True)
    click.echo(
        f"world '{cfg.name}' (seed {cfg.seed}): {report.events:,} impressions, "
        f"{report.users:,} users, "
        f"{report.items:,} items over {report.days} days "
        f"({cfg.days[0]} .. {cfg.days[-1]})\n"
        f"  generated at {report.events_per_s / 1e6:.2f}M impressions/s; "
        f"written in {report.write_s:.1f} s\n"
        f"  raw events : {settings.home / 'raw' / 'events'}/dt=*/part-0.parquet\n"
        f"  users/items: {settings.home / 'raw'}/users.parquet, items.parquet\n"
        f"  truth      : {settings.home / 'truth' / 'user_stage'}/dt=*/part-0.parquet"
    )


@main.group()
def load() -> None:
    """Load a public dataset into the raw-data contract (instead of simulating)."""


def _load(ctx: click.Context, loader_name: str, source: Path, tasks: str | None) -> None:
    from stan_model.data import loaders

    settings = _settings(ctx)
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    try:
        manifest = getattr(loaders, loader_name)(source, settings.home, tasks=task_list)
    except loaders.LoaderError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{manifest.source}: {manifest.n_events:,} impressions, {manifest.n_users:,} users, "
        f"{manifest.n_items:,} items, {manifest.start_date} .. {manifest.end_date}; "
        f"tasks {', '.join(t.name for t in manifest.tasks)} -> {settings.home / 'raw'}"
    )


@load.command("wechat")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tasks", help="Comma-separated tasks (default: like,click_avatar,forward).")
@click.pass_context
def load_wechat(ctx, source, tasks) -> None:
    """WeChat Big Data Challenge 2021: SOURCE holds user_action.csv and feed_info.csv."""
    _load(ctx, "load_wechat", source, tasks)


@load.command("kuairand")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--tasks", help="Comma-separated tasks (default: ctr,like,long_view).")
@click.pass_context
def load_kuairand(ctx, source, tasks) -> None:
    """KuaiRand: SOURCE holds log_standard_*.csv and user_features*.csv."""
    _load(ctx, "load_kuairand", source, tasks)


@main.command()
@click.pass_context
def world(ctx) -> None:
    """Summarise the raw data under the data home: source, tasks, days, rows per day."""
    import pyarrow.parquet as pq

    from stan_model.data import raw_store

    home = _settings(ctx).home
    try:
        manifest = raw_store.read_manifest(home)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    days = raw_store.partition_days(home)
    click.echo(f"source: {manifest.source}; tasks: {', '.join(t.name for t in manifest.tasks)}")
    click.echo(
        f"{manifest.n_users:,} users, {manifest.n_items:,} items, {len(days)} day partitions"
    )
    for day in days:
        rows = pq.ParquetFile(raw_store.events_partition(home, day)).metadata.num_rows
        click.echo(f"  {day}  {rows:>10,} impressions")


from stanflow.cli_models import evaluate, train  # noqa: E402

main.add_command(train)
main.add_command(evaluate)

from stanflow.cli_registry import registry  # noqa: E402

main.add_command(registry)

from stanflow.cli_features import features  # noqa: E402

main.add_command(features)

from stanflow.cli_pipeline import pipeline  # noqa: E402

main.add_command(pipeline)

from stanflow.cli_daily import daily  # noqa: E402

main.add_command(daily)

from stanflow.cli_airflow import airflow_env_cmd  # noqa: E402

main.add_command(airflow_env_cmd)

if __name__ == "__main__":
    main()
