"""Attacks on the connections an asyncio client's publishes keep idle for the next ones
(realtime/broker/evalsha.py, `_Idle`), against a Redis of the test's own.

`_Idle` takes connections past redis-py's pool: kept after a call read its whole reply,
taken again by the next call, returned to the pool on any exception. What is attacked: the
pool's other callers (each connection the pool allows must still serve them), many
publishes at once on pools of 1 to 8 connections (each call must read its own reply), calls
cancelled at random moments, live and while Redis is stopped (no reply is ever read by the
wrong call, and no connection is lost to the pool), a Redis restart with every kept
connection dead, and a pool disconnected under the kept connections, then closed.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable
from typing import Any, cast

import pytest
import redis
import redis.asyncio

from cli.local_redis import LocalRedis
from realtime.broker.topology import async_client
from realtime.eventlog import AsyncEventLog, Retention
from realtime.events import Toast
from realtime.publisher import AsyncUIManager
from realtime.recipients import Recipient
from tests.harness import eventually, unique
from tests.test_script_calls import log_of, own_redis

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
own_redis = own_redis  # the fixture, used by name
RETENTION = Retention(max_len=10_000, max_age_seconds=60)
DEADLINE = 2.0  # the longest a test waits for Redis to show what it expects


class Publisher:
    """One user's publishes on an asyncio client made as the API's is (async_client)."""

    def __init__(self, client: redis.asyncio.Redis, user: str) -> None:
        self.client = client
        self.user = user
        self.log = AsyncEventLog(client, RETENTION)
        self.manager = AsyncUIManager(Recipient.user(user), self.log)

    @classmethod
    async def on(cls, url: str, **options: Any) -> Publisher:
        client = await async_client(url, **options)
        assert isinstance(client, redis.asyncio.Redis)
        return cls(client, unique("u"))

    async def publish(self, description: str) -> str:
        event = Toast(title="Saved", description=description, variant="success")
        return await self.manager.publish(event)

    async def close(self) -> None:
        await self.log.driver.close()


def assert_each_id_is_its_own(url: str, user: str, ids: dict[str, str]) -> None:
    """Every publish answered the id of the entry its own event made, and nothing else."""
    log = log_of(url, user)
    for description, event_id in ids.items():
        assert event_id.endswith(f".{log[description]}"), (description, event_id, log)


def info_clients(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        return cast(dict[str, int], client.info("clients"))
    finally:
        client.close()


def connections_to(url: str) -> int:
    """How many clients Redis counts, the asking one aside."""
    return int(info_clients(url)["connected_clients"]) - 1


async def all_connections_serve_at_once(url: str, client: redis.asyncio.Redis, n: int) -> None:
    """`n` BLPOPs on the client, each on a key of its own: all `n` must be blocked at Redis at
    once (each on a connection of the pool), then all are answered."""
    lists = [unique("held") for _ in range(n)]
    before = int(info_clients(url)["blocked_clients"])
    held = [asyncio.ensure_future(cast(Awaitable[object], client.blpop([key], 2))) for key in lists]
    try:
        await eventually(
            lambda: int(info_clients(url)["blocked_clients"]) - before == n,
            DEADLINE,
            what=f"{n} calls could not each have a connection of the pool",
        )
    finally:
        pusher = redis.Redis.from_url(url)
        for key in lists:
            pusher.rpush(key, b"x")
        pusher.close()
        async with asyncio.timeout(DEADLINE + 1):
            answers = await asyncio.gather(*held, return_exceptions=True)
    assert [answer for answer in answers if isinstance(answer, BaseException)] == []


# --- the pool's other callers ----------------------------------------------------------


@pytest.mark.parametrize("max_connections", [4, 8])
@pytest.mark.parametrize("wait", [None, 1.0], ids=["refusing-pool", "waiting-pool"])
async def test_every_connection_the_pool_allows_serves_other_calls_after_a_burst_of_publishes(
    own_redis: LocalRedis, max_connections: int, wait: float | None
) -> None:
    """A client of `max_connections` serves that many calls at once. After its publishes have
    left connections idle, it still must: a call waiting (or refused, "Too many connections")
    while a connection sits idle is starved by the kept connections."""
    publisher = await Publisher.on(
        own_redis.url, wait_for_connection=wait, max_connections=max_connections
    )
    ids = await asyncio.gather(*(publisher.publish(f"#{n}") for n in range(max_connections)))
    assert len(set(ids)) == max_connections
    await all_connections_serve_at_once(own_redis.url, publisher.client, max_connections)
    await publisher.close()


# --- many publishes at once ------------------------------------------------------------


@pytest.mark.parametrize("max_connections", [1, 2, 4, 8])
async def test_concurrent_publishes_on_a_tiny_pool_each_answer_the_id_of_their_own_event(
    own_redis: LocalRedis, max_connections: int
) -> None:
    publisher = await Publisher.on(
        own_redis.url, wait_for_connection=2, max_connections=max_connections
    )
    ids: dict[str, str] = {}
    for burst in range(3):  # the second and third take the connections the first kept
        names = [f"b{burst}.{n}" for n in range(24)]
        async with asyncio.timeout(DEADLINE):
            answered = await asyncio.gather(*(publisher.publish(name) for name in names))
        ids.update(zip(names, answered, strict=True))
        assert (
            cast(bytes, await publisher.client.echo(f"after {burst}")) == f"after {burst}".encode()
        )
    assert len(set(ids.values())) == 72
    assert_each_id_is_its_own(own_redis.url, publisher.user, ids)
    await publisher.close()


# --- cancelled at random moments ---------------------------------------------------------


async def cancelled_after(steps: int, call: Awaitable[str]) -> str:
    """`call`, cancelled after `steps` turns of the event loop if it has not finished."""
    task = asyncio.ensure_future(call)
    for _ in range(steps):
        if task.done():
            break
        await asyncio.sleep(0)  # one turn of the loop: where the cancel lands is the point
    task.cancel()
    return await task


async def test_publishes_cancelled_at_random_moments_leave_every_later_publish_its_own_id(
    own_redis: LocalRedis,
) -> None:
    """Calls cut off while connecting, sending, reading (Redis live), and while Redis is
    stopped (a timeout around each): every later publish reads its own reply, and the pool
    gets back every connection but the ones kept idle (a quarter of it at most)."""
    rng = random.Random(20261208)
    publisher = await Publisher.on(own_redis.url, wait_for_connection=1, max_connections=8)
    ids: dict[str, str] = {}
    await asyncio.gather(*(publisher.publish(f"warm{n}") for n in range(8)))
    outcomes: list[object] = []  # kept: a lost connection must not be collected away
    for round_ in range(4):
        outcomes += await asyncio.gather(
            *(
                cancelled_after(rng.randrange(12), publisher.publish(f"live{round_}.{n}"))
                for n in range(8)
            ),
            return_exceptions=True,
        )
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:

        async def timed_out(n: int) -> str:
            async with asyncio.timeout(rng.uniform(0.01, 0.15)):
                return await publisher.publish(f"stopped{n}")

        outcomes += await asyncio.gather(*(timed_out(n) for n in range(8)), return_exceptions=True)
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    assert any(isinstance(o, asyncio.CancelledError | TimeoutError) for o in outcomes)
    names = [f"after{n}" for n in range(24)]
    async with asyncio.timeout(DEADLINE):
        answered = await asyncio.gather(*(publisher.publish(name) for name in names))
    ids.update(zip(names, answered, strict=True))
    assert_each_id_is_its_own(own_redis.url, publisher.user, ids)
    await all_connections_serve_at_once(own_redis.url, publisher.client, 8 - 8 // 4)
    await publisher.close()
    assert outcomes


# --- Redis restarted, the pool disconnected and closed -----------------------------------


async def test_after_a_redis_restart_each_publish_on_a_dead_kept_connection_publishes_once(
    own_redis: LocalRedis,
) -> None:
    publisher = await Publisher.on(own_redis.url, wait_for_connection=1, max_connections=64)
    await asyncio.gather(*(publisher.publish(f"before{n}") for n in range(16)))
    own_redis.stop()
    own_redis.start()  # no persistence: the log is gone, every kept connection dead
    names = [f"after{n}" for n in range(8)]
    async with asyncio.timeout(DEADLINE):
        answered = await asyncio.gather(*(publisher.publish(name) for name in names))
    assert sorted(log_of(own_redis.url, publisher.user)) == sorted(names)
    assert_each_id_is_its_own(
        own_redis.url, publisher.user, dict(zip(names, answered, strict=True))
    )
    await publisher.close()


async def test_a_client_serves_after_its_pool_disconnected_and_its_close_leaves_nothing_open(
    own_redis: LocalRedis,
) -> None:
    before = connections_to(own_redis.url)
    publisher = await Publisher.on(own_redis.url, wait_for_connection=1, max_connections=16)
    client = publisher.client
    await asyncio.gather(*(publisher.publish(f"first{n}") for n in range(16)))
    await client.connection_pool.disconnect()
    await eventually(
        lambda: connections_to(own_redis.url) == before, DEADLINE, what="disconnect left some open"
    )
    names = [f"again{n}" for n in range(16)]
    async with asyncio.timeout(DEADLINE):
        answered = await asyncio.gather(*(publisher.publish(name) for name in names))
        key = unique("k")
        pipe = client.pipeline(transaction=False)
        pipe.set(key, b"v")
        pipe.get(key)
        assert await pipe.execute() == [True, b"v"]
    assert_each_id_is_its_own(
        own_redis.url, publisher.user, dict(zip(names, answered, strict=True))
    )
    assert connections_to(own_redis.url) > before
    await publisher.close()
    await eventually(
        lambda: connections_to(own_redis.url) == before,
        DEADLINE,
        what="the client's close left connections open",
    )


async def test_a_kept_connection_that_redis_closed_is_replaced_by_the_next_publish(
    own_redis: LocalRedis,
) -> None:
    """Redis drops idle clients (its `timeout`), and an operator can kill them: each publish
    after finds its kept connection dead, makes a new one, and publishes once."""
    publisher = await Publisher.on(own_redis.url, wait_for_connection=1, max_connections=64)
    await asyncio.gather(*(publisher.publish(f"before{n}") for n in range(8)))
    killer = redis.Redis.from_url(own_redis.url)
    try:
        assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        killer.close()
    names = [f"after{n}" for n in range(4)]
    async with asyncio.timeout(DEADLINE):
        answered = [await publisher.publish(name) for name in names]
    assert len(log_of(own_redis.url, publisher.user)) == 12
    assert_each_id_is_its_own(
        own_redis.url, publisher.user, dict(zip(names, answered, strict=True))
    )
    await publisher.close()
