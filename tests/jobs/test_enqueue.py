"""What accepting a job sends to Redis: the job's message, and no subscription to a result
nobody reads (the job's state is its row; Celery results are not kept)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cli.local_redis import LocalRedis, free_port
from tests.harness import ServerProcess, base_env, unique
from tests.stack import COFFEE

ORDERS = 20


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """The API's broker, result backend and events Redis, counted apart from anyone's."""
    server = LocalRedis(free_port(), tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def api(own_redis: LocalRedis, database_url: str, artifacts: Path) -> Iterator[ServerProcess]:
    port = free_port()
    env = base_env(own_redis.url, DATABASE_URL=database_url)
    process = ServerProcess("api.main:app", port, env, artifacts / f"api-enqueue-{port}.log")
    process.start()
    yield process
    process.stop()


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


def test_accepting_jobs_sends_their_messages_and_subscribes_to_nothing(
    api: ServerProcess, own_redis: LocalRedis, token: Callable[..., str]
) -> None:
    client = redis.Redis.from_url(own_redis.url)
    headers = {"Authorization": f"Bearer {token(unique('u'))}"}
    before = {command: calls(client, command) for command in ("lpush", "subscribe")}
    for _ in range(ORDERS):
        answer = httpx.post(f"{api.http_url}/api/v1/orders", json=COFFEE, headers=headers)
        assert answer.status_code == 202, answer.text
    assert calls(client, "lpush") - before["lpush"] == ORDERS  # one message a job (kombu)
    assert calls(client, "subscribe") == before["subscribe"]
    client.close()
