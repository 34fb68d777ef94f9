"""The Airflow side of STANFLOW_PROFILE: `stanflow airflow-env` and what it is made of."""

import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from stanflow.cli import main
from stanflow.cli_airflow import PRODUCTION_DATABASE_URL, airflow_env
from stanflow.settings import Settings

PRODUCTION = {"STANFLOW_PROFILE": "production", "STANFLOW_REGISTRY_URI": "s3://models/stan"}
STANFLOW = str(Path(sys.executable).with_name("stanflow"))


def test_local_profile_keeps_airflows_own_defaults(tmp_path):
    env = airflow_env(Settings(home=tmp_path), environ={})
    assert env == {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(Path(__file__).resolve().parents[2] / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "STANFLOW_HOME": str(tmp_path),
        "STANFLOW_PROFILE": "local",
    }


def test_production_profile_is_postgresql_and_parallel_local_executor(tmp_path):
    settings = Settings.from_env({**PRODUCTION, "STANFLOW_HOME": str(tmp_path)})
    env = airflow_env(settings, environ={})
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == PRODUCTION_DATABASE_URL
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert int(env["AIRFLOW__CORE__PARALLELISM"]) >= 2
    assert env["STANFLOW_PROFILE"] == "production"  # the tasks see the same profile


def test_airflow_settings_already_in_the_environment_win(tmp_path):
    settings = Settings.from_env({**PRODUCTION, "STANFLOW_HOME": str(tmp_path)})
    explicit = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD": "cat /run/secrets/airflow-db",
        "AIRFLOW__CORE__PARALLELISM": "8",
    }
    env = airflow_env(settings, environ=explicit)
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in env
    assert "AIRFLOW__CORE__PARALLELISM" not in env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_airflow_env_command_output_is_shell_evaluable(tmp_path):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STANFLOW_"))}
    env = {
        **base,
        **PRODUCTION,
        "STANFLOW_HOME": str(tmp_path / "a home"),
        "AIRFLOW__CORE__PARALLELISM": "3",
    }
    script = f'eval "$({STANFLOW} airflow-env)" && env'
    shown = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    values = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
    assert values["AIRFLOW_HOME"] == str(tmp_path / "a home" / "airflow")
    assert values["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == PRODUCTION_DATABASE_URL
    assert values["AIRFLOW__CORE__PARALLELISM"] == "3"  # kept


def test_airflow_env_refuses_production_without_an_s3_registry(monkeypatch):
    monkeypatch.setenv("STANFLOW_PROFILE", "production")
    monkeypatch.delenv("STANFLOW_REGISTRY_URI", raising=False)
    result = CliRunner().invoke(main, ["airflow-env"])
    assert result.exit_code == 2
    assert "STANFLOW_REGISTRY_URI must be an s3://" in result.output
