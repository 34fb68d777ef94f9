"""`make run` end to end in a fresh data home, through the real Makefile and console script."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_make_run_simulates_then_reuses_the_world(tmp_path):
    env = {**os.environ, "STANFLOW_HOME": str(tmp_path / "home"), "STANFLOW_PRESET": "tiny"}
    first = subprocess.run(
        ["make", "-s", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "world 'tiny'" in first.stdout
    assert "14 day partitions" in first.stdout
    manifest = tmp_path / "home" / "raw" / "_world.json"
    stamp = manifest.stat().st_mtime_ns
    second = subprocess.run(
        ["make", "-s", "run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "world 'tiny'" not in second.stdout  # existing raw data are reused, not re-simulated
    assert manifest.stat().st_mtime_ns == stamp
