"""``stanflow daily``: one daily retraining cycle in process -- what ``make run`` does.

Simulates the default world when no raw data exist, runs the ``stan_lifecycle_features`` DAG
and then the ``stan_retrain`` DAG with Airflow's ``dag.test()`` for the day, and prints the run
summary. Airflow's metadata database lives under ``$STANFLOW_HOME/airflow`` (SQLite), or on
PostgreSQL under the production profile (``stanflow.cli_airflow``).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import click

from components.runner import EXTRA_MODELS  # the module imports only the standard library
from stanflow.cli_airflow import REPO_DAGS, profile_env

log = logging.getLogger(__name__)


def airflow_env(home: Path) -> dict[str, str]:
    """Environment for an embedded Airflow whose state lives in the data home."""
    airflow_home = home / "airflow"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "STANFLOW_HOME": str(home),
    }


def _migrate(env: dict[str, str]) -> None:
    """``airflow db migrate``, in this process (a new database only; a marker remembers it).

    In process rather than as the ``airflow`` command: this process imports Airflow for
    ``dag.test()`` anyway, and a second interpreter importing it again cost 3-5 s per first run.
    """
    # One marker per metadata database: the SQLite file under AIRFLOW_HOME, or another URL.
    url = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    suffix = f"-{hashlib.sha256(url.encode()).hexdigest()[:12]}" if url else ""
    marker = Path(env["AIRFLOW_HOME"]) / f".migrated{suffix}"
    if marker.exists():
        return
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    # Airflow sets up its logging on first import, on the stdout of that moment: keep it stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from airflow.utils.db import upgradedb
        from airflow.utils.providers_configuration_loader import providers_configuration_loaded

        try:
            providers_configuration_loaded(upgradedb)()  # what `airflow db migrate` runs
        except Exception as exc:  # noqa: BLE001 -- any failure: say so, with Airflow's message
            raise click.ClickException(f"airflow db migrate failed: {exc}") from exc
    marker.touch()


def _dag_test(dag_id: str, day, conf: dict | None = None):
    import datetime as dt

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_DAGS / f"{dag_id}.py"))
    if bag.import_errors:
        raise click.ClickException(f"{dag_id}: import errors {bag.import_errors}")
    logical = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    run = bag.dags[dag_id].test(logical_date=logical, run_conf=conf or {})
    if str(run.state) != "success" and getattr(run.state, "value", "") != "success":
        raise click.ClickException(f"{dag_id} for {day} ended {run.state}; see the task logs above")
    return run


def _task_durations(run) -> dict[str, float]:
    """Seconds per task of a finished DAG run (``dag_id.task_id``)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id
        )
        return {f"{ti.dag_id}.{ti.task_id}": round(ti.duration or 0.0, 3) for ti in tis}


def _print_summary(summary: dict, folder: Path) -> None:
    metrics = summary["metrics"]
    tasks = list(metrics["stan"])
    click.echo("")
    click.echo(
        f"{'task':8s} {'STAN AUC':>9s} {'PLE AUC':>9s} {'lift':>8s}  "
        f"{'STAN NDCG@5':>11s} {'PLE NDCG@5':>10s}"
    )
    for t in tasks:
        s, p = metrics["stan"][t], metrics["ple"][t]
        click.echo(
            f"{t:8s} {s['auc']:9.4f} {p['auc']:9.4f} {s['auc'] - p['auc']:+8.4f}  "
            f"{s['ndcg@5']:11.4f} {p['ndcg@5']:10.4f}"
        )
    for family in metrics:
        if family not in ("stan", "ple"):
            aucs = "  ".join(f"{t} {metrics[family][t]['auc']:.4f}" for t in tasks)
            click.echo(f"{family} (not gated) AUC: {aucs}")
    gate = summary["gate"]
    click.echo(
        f"\ngate: {gate['decision'].upper()}" + (" (override)" if gate.get("overridden") else "")
    )
    for reason in gate["reasons"]:
        if reason.startswith("FAIL") or reason.startswith("OVERRIDE"):
            click.echo(f"  {reason}")
    passed = sum(r.startswith("PASS") for r in gate["reasons"])
    click.echo(f"  ({passed} checks passed; all reasons in summary.json)")
    click.echo(f"candidate: {summary['model_uri']}")
    click.echo(f"champion : {summary['champion_uri']}")
    click.echo(f"summary  : {folder / 'summary.json'}")
    click.echo(f"report   : {folder / 'report.html'}")


@click.command()
@click.option("--date", "date_", help="Day to run, YYYY-MM-DD (default: the latest raw partition).")
@click.option("--epochs", type=int, default=3, show_default=True, help="Maximum training epochs.")
@click.option(
    "--window-days",
    type=int,
    default=14,
    show_default=True,
    help="Days of impressions in the training set.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--force-promote",
    is_flag=True,
    help="Promote STAN even if the gate rejects it (needs --reason; kept in the history).",
)
@click.option("--reason", default="", help="Why the gate is overridden (with --force-promote).")
@click.option(
    "--extra-model",
    "extra_models",
    multiple=True,
    type=click.Choice(EXTRA_MODELS),
    help="Also train and report this baseline (not gated). Repeatable.",
)
@click.option(
    "--features-only",
    is_flag=True,
    help="Run only the features DAG for the day (e.g. to backfill days one by one).",
)
@click.pass_context
def daily(
    ctx, date_, epochs, window_days, seed, force_promote, reason, extra_models, features_only
) -> None:
    """One daily cycle in process: features DAG, then retrain DAG, then the summary.

    Simulates the default world (STANFLOW_PRESET) first when the home holds no raw data.
    Rerunning a day replaces what it wrote: the stores and the champion end as after one run.
    """
    import datetime as dt

    from stan_model.data import raw_store

    home = ctx.obj["settings"].home
    timings = {}
    env = {**airflow_env(home), **profile_env(ctx.obj["settings"])}
    os.environ.update(env)
    # At exit (after every other exit handler, Airflow's included), spare the interpreter its
    # last garbage collection over the millions of objects Airflow, Feast, GX and torch leave
    # behind: 3 s after the summary was printed on a busy 2-core machine. Files are written and
    # closed by then, and the memory goes back to the OS with the process.
    atexit.register(gc.freeze)
    if not raw_store.manifest_path(home).exists():
        from stan_model.data.simulator import write_world
        from stan_model.data.world_config import WorldConfig

        started = time.perf_counter()
        cfg = WorldConfig.preset(ctx.obj["settings"].preset)
        report = write_world(cfg, home, progress=True)
        timings["simulate"] = round(time.perf_counter() - started, 3)
        click.echo(f"simulated world '{cfg.name}': {report.events:,} impressions")
    days = raw_store.partition_days(home)
    day = dt.date.fromisoformat(date_) if date_ else days[-1]
    if day not in days:
        raise click.BadParameter(f"{day} has no raw events; the world has {days[0]} .. {days[-1]}")
    if force_promote and not reason.strip():
        raise click.UsageError("--force-promote needs --reason (kept in the promotion history)")
    _migrate(env)
    conf = {
        "epochs": epochs,
        "window_days": window_days,
        "date": day.isoformat(),
        "seed": seed,
        "force_promote": force_promote,
        "override_reason": reason,
        "models": ["stan", "ple", *extra_models],
    }
    dags = "stan_lifecycle_features" + ("" if features_only else " and stan_retrain")
    click.echo(f"running {dags} for {day} (logs: stderr)")
    # Airflow's task logs go to stdout under dag.test(); keep stdout for the summary.
    with contextlib.redirect_stdout(sys.stderr):
        timings.update(_task_durations(_dag_test("stan_lifecycle_features", day)))
        run = None if features_only else _dag_test("stan_retrain", day, conf)
        if run is not None:
            timings.update(_task_durations(run))
    if run is None:
        click.echo(f"features of {day}: built, validated and materialized")
        return
    from components.daily import run_folder_name

    folder = home / "runs" / run_folder_name(run.run_id)
    summary = json.loads((folder / "summary.json").read_text())
    summary["timings_s"].update(timings)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, folder)
