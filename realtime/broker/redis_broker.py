"""The broker over Redis, one server or a cluster: the edge's log store, live feed and
presence store on one client, found out by asking the node `EVENTS_REDIS_URL` names.

On one Redis, a bounded pool that makes callers wait for a free connection (a burst of
connects queues its replays instead of opening a Redis connection per WebSocket), and the
node is kept connected while idle (readiness). On a cluster, redis-py's cluster client, which
refuses a call when a node's pool is full rather than wait: reads and presence calls in
flight are bounded here instead.
"""

from __future__ import annotations

import asyncio
import contextlib

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from realtime.broker import (
    Admission,
    Entry,
    Marks,
    Stamp,
    admission_calls,
    presence_calls,
    ticket_calls,
)
from realtime.broker.drivers import AsyncClient, AsyncDriver
from realtime.broker.log_calls import Retention
from realtime.broker.redis_live import RedisLiveFeed
from realtime.broker.topology import (
    ClusterTopology,
    SingleNode,
    async_client,
    is_cluster_async,
    waiting_client,
)
from realtime.eventlog import AsyncEventLog
from realtime.recipients import Recipient
from realtime.revocation import revocation_mark_async

CLUSTER_READS = 32  # reads from the logs in flight at once, on a cluster
PRESENCE_CALLS = 16  # presence scripts in flight at once, on a cluster (within the pool too)
PIPELINE_CALLS = 256  # presence writes per pipeline round trip


class RedisPresenceStore:
    """The `PresenceStore` over Redis (`presence_calls`, `admission_calls`)."""

    def __init__(self, driver: AsyncDriver, *, concurrency: int | None = None) -> None:
        self._driver = driver
        self._calls = asyncio.Semaphore(concurrency) if concurrency else None

    async def enter(
        self,
        user_id: str,
        issued_at: float | None,
        count: int,
        cap: int,
        by: Stamp,
        tab: tuple[str, int] | None = None,
    ) -> Admission:
        call = admission_calls.enter(user_id, issued_at, count, cap, by, tab)
        async with self._calls or contextlib.nullcontext():
            return await self._driver.run(call)

    async def put(self, entries: dict[Entry, int], by: Stamp) -> Marks:
        """A few scripts (`presence_calls.put`), pipelined, PIPELINE_CALLS at a time."""
        batch = presence_calls.put(entries, by, cluster=self._driver.cluster)
        marks: Marks = []
        for start in range(0, len(batch), PIPELINE_CALLS):
            async with self._calls or contextlib.nullcontext():
                replies = await self._driver.run_all(batch[start : start + PIPELINE_CALLS])
            for found in replies:
                marks.extend(found)
        return marks

    async def revocation_mark(self, user_id: str) -> int | None:
        async with self._calls or contextlib.nullcontext():
            return await revocation_mark_async(self._driver, user_id)


class RedisTicketStore:
    """The `TicketStore` over Redis (`ticket_calls`)."""

    def __init__(self, driver: AsyncDriver) -> None:
        self._driver = driver

    async def issue(self, user_id: str, secret: str, identity: str, ttl_ms: int) -> None:
        user = Recipient.user(user_id)
        await self._driver.run(ticket_calls.issue(user, secret, identity, ttl_ms))

    async def spend(self, user_id: str, secret: str) -> str | None:
        return await self._driver.run(ticket_calls.spend(Recipient.user(user_id), secret))


class RedisBroker:
    """The broker seam over Redis: `connect` it, then hand it to the edge."""

    def __init__(
        self, client: AsyncClient, retention: Retention, live: RedisLiveFeed, *, cluster: bool
    ) -> None:
        self.client = client
        self.log = AsyncEventLog(client, retention, concurrency=CLUSTER_READS if cluster else None)
        self.live = live
        self.presence = RedisPresenceStore(
            self.log.driver, concurrency=PRESENCE_CALLS if cluster else None
        )
        self.tickets = RedisTicketStore(self.log.driver)

    @classmethod
    async def connect(
        cls,
        url: str,
        retention: Retention,
        *,
        wait_for_pool: float,
        pubsub_ping_interval: float,
    ) -> RedisBroker:
        """Connect to the Redis (or cluster) at `url`; raises redis.RedisError (or OSError)
        when it does not answer. `wait_for_pool`: the longest a call waits for a pooled
        connection on one Redis."""
        # Replays are reads: after a Redis restart or a failover, they are retried.
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5)
        if await is_cluster_async(url):
            cluster = await async_client(
                url,
                # Per node; redis-py refuses a call past it rather than wait, and one read may
                # take more than one (a script not loaded yet is loaded on every master).
                max_connections=4 * CLUSTER_READS,
                socket_timeout=5,
                socket_connect_timeout=5,
                retry=retry,
            )
            assert isinstance(cluster, redis.asyncio.RedisCluster)
            live = RedisLiveFeed(ClusterTopology(cluster, url), ping_interval=pubsub_ping_interval)
            return cls(cluster, retention, live, cluster=True)
        client = waiting_client(
            url,
            wait_for_pool,
            max_connections=32,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
            retry=retry,
        )
        await client.ping()
        live = RedisLiveFeed(SingleNode(url), ping_interval=pubsub_ping_interval, home=url)
        return cls(client, retention, live, cluster=False)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def close(self) -> None:
        await self.live.close()
        await self.log.driver.close()
