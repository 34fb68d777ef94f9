"""Shared fixtures: simulated worlds written once per test session into temporary homes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stan_model.data.simulator import write_world
from stan_model.data.world_config import WorldConfig


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("tiny_home")
    write_world(WorldConfig.preset("tiny"), home)
    return home


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("small_home")
    write_world(WorldConfig.preset("small"), home)
    return home
