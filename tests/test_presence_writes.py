"""An edge's presence write (its heartbeat) over many users, against a real Redis and a real
Redis Cluster: every entry written and every revocation mark handed back to its own user,
whether the entries travel a few hundred to a script (one Redis) or a slot to a script (a
cluster, where a script's keys must share a slot)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from cli.local_redis import LocalRedis
from realtime.broker.drivers import AsyncDriver
from realtime.broker.presence_calls import ENTRIES_PER_CALL, Entry, Stamp, put
from realtime.broker.redis_broker import RedisPresenceStore
from realtime.broker.topology import async_client
from realtime.presence import connections_async, members_async
from realtime.recipients import Recipient
from realtime.revocation import revoke_async
from tests.harness import unique
from tests.local_cluster import LocalCluster

pytestmark = pytest.mark.anyio

USERS = 2 * ENTRIES_PER_CALL + 88  # three calls' worth on one Redis, with each kind of entry


def heartbeat(prefix: str) -> dict[Entry, int]:
    """What an edge with USERS users writes: each user's count, and as a member of a business;
    every tenth user with a tab of their own."""
    entries: dict[Entry, int] = {}
    for n in range(USERS):
        user = f"{prefix}-{n}"
        entries[Entry(user)] = 1 + n % 3
        entries[Entry(user, business=f"{prefix}-b{n % 7}")] = 1 + n % 3
        if n % 10 == 0:
            entries[Entry(user, tab=f"tab{n}")] = 1
    return entries


async def write_and_check(url: str) -> None:
    driver = AsyncDriver(await async_client(url))
    try:
        prefix = unique("hb")
        revoked = {f"{prefix}-{n}" for n in (0, ENTRIES_PER_CALL - 1, ENTRIES_PER_CALL, USERS - 1)}
        marks = {user: await revoke_async(driver, Recipient.user(user), 60) for user in revoked}

        found = await RedisPresenceStore(driver).put(heartbeat(prefix), Stamp("edge-a", 1, 60_000))

        assert dict(found) == marks
        for n in (0, 1, ENTRIES_PER_CALL, USERS - 1):
            user = Recipient.user(f"{prefix}-{n}")
            assert await connections_async(driver, user) == 1 + n % 3
        members = await members_async(driver, Recipient.business(f"{prefix}-b0"))
        assert members == {f"{prefix}-{n}": 1 + n % 3 for n in range(0, USERS, 7)}
    finally:
        await driver.client.aclose()


async def test_a_heartbeat_of_many_users_on_one_redis_writes_every_entry_and_finds_every_mark(
    redis_server: LocalRedis,
) -> None:
    await write_and_check(redis_server.url)


async def test_the_same_heartbeat_on_a_cluster_writes_every_entry_and_finds_every_mark(
    redis_cluster: LocalCluster,
) -> None:
    await write_and_check(redis_cluster.url)


def test_one_redis_gets_a_script_per_few_hundred_entries_a_cluster_one_per_slot() -> None:
    entries = heartbeat("shape")
    stamp = Stamp("edge-a", 1, 60_000)

    on_one_redis = put(entries, stamp, cluster=False)
    on_a_cluster = put(entries, stamp, cluster=True)

    assert len(on_one_redis) == -(-len(entries) // ENTRIES_PER_CALL)
    assert len(on_a_cluster) > 10 * len(on_one_redis)
    for call in on_a_cluster:
        assert len({key_slot(key.encode()) for key in call.keys}) == 1
