"""The floors `bench.server_api` reads the job API's publish against (`bench.floor_api`):
each answers a POST, and each kind of round trip reaches the Redis it is given, as the
command it names, once per request. A floor that skipped its Redis call would make the API
look dearer than it is, and nothing else would notice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis

from bench import floor_api
from cli.local_redis import LocalRedis
from tests.harness import WAIT
from tests.jobs.asgi_calls import Reply, send_to

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """uvloop, as under uvicorn: its transports are not asyncio's classes."""
    return "asyncio", {"use_uvloop": True}


async def post() -> Reply:
    return await send_to(floor_api.app, [], [b'{"to":{"user":"u1"}}'], path="/")


@pytest.fixture
async def fresh_floor() -> AsyncIterator[None]:
    """The floor's connections are made on first use and kept: each test starts without."""
    yield
    for client in floor_api._clients:
        await client.aclose()
    for bare in floor_api._bare:
        bare.close()
    floor_api._clients.clear()
    floor_api._bare.clear()


def calls_of(server: redis.Redis, command: str) -> int:
    stats = server.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


async def test_the_bare_floor_answers_without_redis(
    monkeypatch: pytest.MonkeyPatch, fresh_floor: None
) -> None:
    monkeypatch.delenv("FLOOR_REDIS_URL", raising=False)
    answer = await post()
    assert answer.status == 200
    assert answer.body == b'{"id":"floor"}'


@pytest.mark.parametrize(("kind", "command"), [
    ("client", "ping"), ("evalsha", "evalsha"), ("bare", "ping"),
])  # fmt: skip
async def test_each_floor_makes_one_round_trip_of_its_kind_per_request(
    kind: str,
    command: str,
    redis_server: LocalRedis,
    monkeypatch: pytest.MonkeyPatch,
    fresh_floor: None,
) -> None:
    monkeypatch.setenv("FLOOR_REDIS_URL", redis_server.url)
    monkeypatch.setenv("FLOOR_REDIS_CALL", kind)
    server = redis.Redis.from_url(redis_server.url)
    await post()  # the first connects: a health check's PING, a script sent once
    before = calls_of(server, command)
    for _ in range(5):
        assert (await post()).status == 200
    assert calls_of(server, command) - before == 5
    server.close()


async def test_the_bare_connection_fails_every_waiting_call_when_redis_hangs_up(
    redis_server: LocalRedis, fresh_floor: None
) -> None:
    bare = await floor_api._BareRedis.open(redis_server.url)
    assert await bare.call(b"*1\r\n$4\r\nPING\r\n") == b"PONG"
    pending = bare.call(b"*1\r\n$4\r\nQUIT\r\n"), bare.call(b"*1\r\n$4\r\nPING\r\n")
    async with asyncio.timeout(WAIT):
        assert await pending[0] == b"OK"
        with pytest.raises(ConnectionError):
            await pending[1]
