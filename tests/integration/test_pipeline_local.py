"""`stanflow pipeline run` on the tiny world with the real KFP local runner, offline.

Run 1 forces promotion with a written reason (so a champion exists); run 2 is an ordinary run
of the same day whose gate re-scores that champion on its own test days. Training is
deterministic, so run 2's STAN is the version run 1 registered: nothing new is registered.
"""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from components.registry.factory import storage_from_uri
from components.registry.registry import ModelRegistry
from stanflow.cli import main


@pytest.fixture(scope="module")
def home(tiny_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("pipeline") / "home"
    shutil.copytree(tiny_world, home)
    return home


def _run(home: Path, *extra: str) -> dict:
    args = [
        "--home",
        str(home),
        "pipeline",
        "run",
        "--date",
        "2026-01-14",
        "--window-days",
        "8",
        "--epochs",
        "1",
        "--json",
        *extra,
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # logs go to stderr: stdout is the record alone


@pytest.mark.integration
def test_pipeline_runs_gates_registers_and_promotes(home, monkeypatch):
    monkeypatch.setenv("STANFLOW_HOME", str(home))
    forced = _run(home, "--force-promote", "--reason", "bootstrap the first champion")
    assert forced["decision"] == "promote"
    assert any("stage" in r for r in forced["reasons"]) and any(
        "margin auc" in r for r in forced["reasons"]
    )
    registry = ModelRegistry(storage_from_uri(str(home / "registry")))
    assert registry.champion() == forced["version"]
    meta = registry.show(forced["version"])
    assert meta is not None

    # Artifacts and metrics are under the pipeline root, one folder per component.
    runs = sorted((home / "pipeline_root").iterdir())
    assert len(runs) == 1
    names = {p.name for p in runs[0].iterdir()}
    assert {
        "build-training-set",
        "train-model",
        "train-model-2",
        "evaluate-model",
        "gate",
        "promote",
    } <= names
    evaluation = json.loads(
        (runs[0] / "evaluate-model" / "evaluation" / "evaluation.json").read_text()
    )
    assert set(evaluation["auc"]) == {"ctr", "stay", "cvr"}

    second = _run(home)
    assert second["decision"] in ("promote", "reject")
    champion_checks = [r for r in second["reasons"] if "champion" in r]
    assert champion_checks and all("no current champion" not in r for r in champion_checks)
    assert second["metrics"]["champion"] is not None  # the champion was re-scored
    # The same day again trains the same model: it is the registered version, and the champion
    # (promoted once) stays as it was whatever the gate says now.
    assert second["version"] == forced["version"] and second["reused_version"] is True
    assert registry.champion() == forced["version"]
    assert registry.list_versions() == [forced["version"]]
    assert len(registry.history()) == 1
