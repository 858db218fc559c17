"""Fixtures for the job system: one full stack per database backend.

Data and end-to-end tests run on both SQLite and PostgreSQL; PostgreSQL is the one on
127.0.0.1:5432 (.ci/run installs and starts it where none runs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.local_redis import LocalRedis
from tests.harness import Edge
from tests.stack import Stack, fresh_database, require, start_stack

CELERY_KEYS = ("orders", "payments", "metrics", "unacked", "unacked_index", "unacked_mutex")


# PostgreSQL is a service: its half is beyond the fast tier (the smoke tests run on SQLite).
@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]
)
def database_url(request: pytest.FixtureRequest, artifacts: Path) -> Iterator[str]:
    require(request.param)
    with fresh_database(request.param, artifacts) as url:
        yield url


@pytest.fixture(scope="module")
def stack(
    redis_server: LocalRedis, database_url: str, edge: Edge, artifacts: Path
) -> Iterator[Stack]:
    running = start_stack(redis_server.url, database_url, artifacts, edge)
    yield running
    for process in (running.worker, running.api, running.stripe):
        process.stop()
    # Messages left for this stack's database must not reach the next stack's worker.
    client = redis.Redis.from_url(redis_server.url)
    client.delete(*CELERY_KEYS)
    client.close()
