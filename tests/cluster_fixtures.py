"""Fixtures with a real Redis Cluster on loopback: 3 masters and 3 replicas, each a
`redis-server --cluster-enabled yes` in its own directory, stopped by PID afterwards (see
tests/local_cluster.py). Registered from conftest.py by `pytest_plugins`.

- `redis_cluster`: one cluster for the whole session, for tests that leave it healthy (they
  may migrate slots or promote replicas, but finish what they start and use unique keys);
- `fresh_cluster`: a cluster of the test's own, for tests that kill nodes;
- `cluster_edges`: two edges per test module, each given a different master of
  `redis_cluster` as EVENTS_REDIS_URL (`start_cluster_edges` for other settings).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.local_redis import LocalRedis
from tests.harness import Edge, start_edge
from tests.local_cluster import LocalCluster


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


def start_cluster_edges(
    cluster: LocalCluster, redis_url: str, artifacts: Path, **env: str
) -> tuple[Edge, Edge]:
    """Two edges, each given a different master of `cluster` (any node would do)."""
    first, second = cluster.masters()[:2]
    return (
        start_edge(redis_url, artifacts, EVENTS_REDIS_URL=cluster.node(first).url, **env),
        start_edge(redis_url, artifacts, EVENTS_REDIS_URL=cluster.node(second).url, **env),
    )


@pytest.fixture(scope="module")
def cluster_edges(
    redis_cluster: LocalCluster, redis_server: LocalRedis, artifacts: Path
) -> Iterator[tuple[Edge, Edge]]:
    edges = start_cluster_edges(redis_cluster, redis_server.url, artifacts)
    yield edges
    for edge in edges:
        edge.stop()
