"""`make run` end to end in a fresh data home, through the real Makefile and console script:
simulate, the features DAG and the retrain DAG under `dag.test()`, the printed summary."""

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_make_run_does_one_daily_cycle(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "STANFLOW_HOME": str(home), "STANFLOW_PRESET": "tiny"}
    run = subprocess.run(
        ["make", "-s", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "simulated world 'tiny'" in out
    for needle in ("STAN AUC", "PLE AUC", "ctr", "stay", "cvr", "gate: ", "champion :"):
        assert needle in out, needle
    summaries = list((home / "runs").glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    for key in ("run_id", "logical_date", "data", "validation", "metrics", "metrics_by_stage",
                "gate", "model_uri", "champion_uri", "timings_s"):
        assert key in summary, key
    assert summary["logical_date"] == "2026-01-14"
    assert summary["gate"]["decision"] in ("promote", "reject")
    assert set(summary["metrics"]["stan"]) == {"ctr", "stay", "cvr"}
    assert (summaries[0].parent / "report.html").exists()
    # The features DAG materialized the day; the retrain DAG registered STAN's model.
    assert (home / "feast").exists()
    assert list((home / "registry" / "versions").iterdir())
