"""Servers shared by the integration tests of one session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.seaweed import SeaweedServer, running_seaweed


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS S3 server on loopback for the session; each test uses its own prefix."""
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server
