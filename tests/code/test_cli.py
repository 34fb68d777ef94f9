"""The `stanflow` command: help everywhere, clear usage errors, simulate writes a world."""

import click
import pytest
from click.testing import CliRunner

from stanflow.cli import main


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [(), *_commands(main)], ids=lambda p: " ".join(p) or "stanflow")
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    # A real sentence of help, not just the usage line.
    assert len(result.output.split("\n\n")[1].strip()) > 20


def test_simulate_then_world(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        main, ["--home", str(tmp_path), "simulate", "--preset", "tiny", "--days", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "impressions" in result.output and "truth" in result.output
    result = runner.invoke(main, ["--home", str(tmp_path), "world"])
    assert result.exit_code == 0, result.output
    assert "3 day partitions" in result.output and "2026-01-03" in result.output


def test_simulate_refuses_preset_and_config_together(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("name: x\n")
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path), "simulate", "--preset", "tiny", "--config", str(cfg)]
    )
    assert result.exit_code == 2
    assert "not both" in result.output


def test_simulate_reports_a_bad_config_file(tmp_path):
    cfg = tmp_path / "w.yaml"
    cfg.write_text("name: x\nn_users: -1\n")
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "simulate", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "w.yaml" in result.output and "n_users" in result.output


def test_world_without_data_says_what_to_do(tmp_path):
    result = CliRunner().invoke(main, ["--home", str(tmp_path), "world"])
    assert result.exit_code == 1
    assert "stanflow simulate" in result.output


def test_bad_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("STANFLOW_ONLINE_STORE", "dynamodb")
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 2
    assert "STANFLOW_ONLINE_STORE" in result.output
