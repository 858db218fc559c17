"""An edge authenticates its pub/sub connection to a Redis that requires a password, and one
given the wrong password says so (without the password) and stays unready."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cli.local_redis import LocalRedis, free_port
from core.config import Settings
from edge.serving import APP
from realtime import UIManager
from realtime.eventlog import EventLog
from realtime.recipients import Recipient
from tests.harness import Client, Edge, base_env, eventually, id_of, unique

pytestmark = [pytest.mark.anyio, pytest.mark.integration]  # a Redis with a password


@pytest.fixture(scope="module")
def guarded_redis(artifacts: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(free_port(), artifacts / "guarded-redis", password=secrets.token_hex(8))
    yield server.start()
    server.stop()


async def test_an_edge_delivers_through_a_redis_that_requires_a_password(
    guarded_redis: LocalRedis,
    edge_factory: Callable[..., Edge],
    token: Callable[..., str],
    settings: Settings,
) -> None:
    edge = edge_factory(guarded_redis.url)
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    log = EventLog(redis.Redis.from_url(guarded_redis.url), settings.retention)
    event_id = UIManager(Recipient.user(user), log).show_toast("Saved", "with AUTH", "success")
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    await client.close()


async def test_a_wrong_password_keeps_the_edge_unready_and_is_logged_without_it(
    guarded_redis: LocalRedis, artifacts: Path
) -> None:
    wrong = "not-the-" + secrets.token_hex(6)
    url = f"redis://:{wrong}@127.0.0.1:{guarded_redis.port}/0"
    port = free_port()
    edge = Edge(APP, port, base_env(url), artifacts / f"edge-{port}.log", ready_path="/healthz")
    edge.start()
    try:
        await eventually(lambda: "redis AUTH failed" in edge.log_text())
        async with httpx.AsyncClient(timeout=5) as http:
            readiness = await http.get(f"{edge.http_url}/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["pubsub"] is False
        assert wrong not in edge.log_text()
        failures = [
            json.loads(line) for line in edge.log_text().splitlines() if "redis AUTH failed" in line
        ]
        assert failures
        assert all(line["level"] == "warning" for line in failures)
    finally:
        edge.stop()
