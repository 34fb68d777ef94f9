"""Shared fixtures: simulated worlds written once per test session into temporary homes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stan_model.data.dataset import build_dataset
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


@pytest.fixture
def one_torch_thread():
    """One torch thread: on a shared 2-core machine, two OpenMP threads spinning against other
    processes made the model tests 10-20x slower; one thread is steady."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_data(tiny_world):
    """The tiny world as model tensors (rebuilt per module: tests may train on it)."""
    return build_dataset(tiny_world)
