"""The Airflow side of ``STANFLOW_PROFILE``, and ``stanflow airflow-env`` which prints it.

Airflow takes its configuration from ``AIRFLOW__SECTION__KEY`` variables, so a profile is a set
of them: ``local`` keeps Airflow's own defaults (SQLite metadata under the data home), and
``production`` puts the metadata on PostgreSQL and runs tasks in parallel with the
LocalExecutor. A variable already set (or its ``_CMD`` / ``_SECRET`` form) wins over the profile.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

import click

from stanflow.settings import Settings

REPO_DAGS = Path(__file__).resolve().parent.parent / "dags"
# The database `createdb airflow` makes on the PostgreSQL the README's production section runs.
PRODUCTION_DATABASE_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/airflow"


def production_parallelism() -> int:
    """Task slots of the LocalExecutor: one per core (training uses a core fully), at least 2."""
    return max(2, os.cpu_count() or 1)


def profile_defaults(settings: Settings) -> dict[str, str]:
    """The ``AIRFLOW__*`` values the profile asks for (``local``: none, Airflow's defaults)."""
    if settings.profile == "local":
        return {}
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": PRODUCTION_DATABASE_URL,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(production_parallelism()),
    }


def is_set(name: str, environ: Mapping[str, str]) -> bool:
    """Whether Airflow already gets ``name`` from the environment (directly, _CMD or _SECRET)."""
    return any(key in environ for key in (name, f"{name}_CMD", f"{name}_SECRET"))


def profile_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The profile's ``AIRFLOW__*`` values that ``environ`` does not set already."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in profile_defaults(settings).items() if not is_set(k, environ)}


def airflow_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything an Airflow serving stanflow's DAGs needs: home, DAG folder, the profile.

    ``STANFLOW_PROFILE`` is passed on so the tasks (Feast, the registry) see the same profile.
    """
    home = settings.home
    return {
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "STANFLOW_HOME": str(home),
        "STANFLOW_PROFILE": settings.profile,
        **profile_env(settings, environ),
    }


@click.command("airflow-env")
@click.pass_context
def airflow_env_cmd(ctx: click.Context) -> None:
    """Print `export` lines that configure Airflow for STANFLOW_PROFILE.

    Use: eval "$(stanflow airflow-env)" && airflow standalone (what `make airflow` does).
    Under the production profile: metadata on PostgreSQL (AIRFLOW__DATABASE__SQL_ALCHEMY_CONN,
    default postgresql+psycopg2://postgres@127.0.0.1:5432/airflow), the LocalExecutor, one task
    slot per core. AIRFLOW__* variables already set are kept and listed as comments.
    """
    settings: Settings = ctx.obj["settings"]
    click.echo(f"# stanflow profile: {settings.profile}")
    for name in profile_defaults(settings):
        if is_set(name, os.environ):
            click.echo(f"# {name}: kept from the environment")
    for name, value in airflow_env(settings).items():
        click.echo(f"export {name}={shlex.quote(value)}")
