"""Fixtures with a real Redis Cluster on loopback: 3 masters and 3 replicas, each a
`redis-server --cluster-enabled yes` in its own directory, stopped by PID afterwards (see
cli/local_cluster.py). Registered from conftest.py by `pytest_plugins`.

- `redis_cluster`: one cluster for the whole session, for tests that leave it healthy (they
  may migrate slots or promote replicas, but finish what they start and use unique keys);
- `fresh_cluster`: a cluster of the test's own, for tests that kill nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_cluster import LocalCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster started for one test (~3 s) and stopped after it: kill what you like."""
    cluster = LocalCluster(tmp_path / "redis-cluster").start()
    yield cluster
    cluster.stop()
