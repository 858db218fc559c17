"""The events Redis as a process holds it: a driver, and the log's retention.

`EventLog` is the synchronous handle (Celery tasks, scripts), `AsyncEventLog` the asyncio one
(the API's routes, the edge, where it is the Redis `LogStore` of the broker seam). What each
call does is in `realtime.broker.log_calls` and `presence_calls`; these only run it.
"""

from __future__ import annotations

import asyncio
import contextlib

from realtime.broker.call import MASTER_ONLY, Durability
from realtime.broker.drivers import AsyncClient, AsyncDriver, SyncClient, SyncDriver
from realtime.broker.log_calls import Page, Retention, append, replay
from realtime.frames import Position
from realtime.options import PublishOptions
from realtime.recipients import Recipient

__all__ = ["AsyncEventLog", "Durability", "EventLog", "Retention"]


class EventLog:
    """Appends events from synchronous code, on one Redis or a cluster."""

    def __init__(
        self, client: SyncClient, retention: Retention, durability: Durability = MASTER_ONLY
    ) -> None:
        self.driver = SyncDriver(client, durability)
        self.retention = retention

    @property
    def client(self) -> SyncClient:
        return self.driver.client

    def append(self, recipient: Recipient, body: str, ttl: float, options: PublishOptions) -> str:
        """Store and announce one event; returns its id (the first one's, for a repeated
        idempotency key). Redis errors propagate."""
        return self.driver.run(append(recipient, body, ttl, options, self.retention))


class AsyncEventLog:
    """The asyncio twin of EventLog, plus the reads the edge makes: pages and the clock."""

    def __init__(
        self,
        client: AsyncClient,
        retention: Retention,
        *,
        concurrency: int | None = None,
        durability: Durability = MASTER_ONLY,
    ) -> None:
        self.driver = AsyncDriver(client, durability)
        self.retention = retention
        # redis-py's cluster client refuses a call when a node's pool is full, where a
        # BlockingConnectionPool would make it wait: at most this many reads at once.
        self._reads = asyncio.Semaphore(concurrency) if concurrency else None

    @property
    def client(self) -> AsyncClient:
        return self.driver.client

    async def append(
        self, recipient: Recipient, body: str, ttl: float, options: PublishOptions
    ) -> str:
        """Store and announce one event; returns its id. Redis errors propagate."""
        return await self.driver.run(append(recipient, body, ttl, options, self.retention))

    async def replay_page(
        self,
        recipient: Recipient,
        after: Position,
        *,
        check: bool,
        max_entries: int,
        max_bytes: int,
    ) -> Page:
        """A page of one recipient's log after `after` (`log_calls.replay`)."""
        call = replay(
            recipient,
            after,
            check=check,
            max_entries=max_entries,
            max_bytes=max_bytes,
            retention=self.retention,
        )
        async with self._reads or contextlib.nullcontext():
            return await self.driver.run(call)

    async def server_time(self) -> tuple[int, int]:
        """Redis's clock as (seconds, microseconds); on a cluster, the earliest master's."""
        async with self._reads or contextlib.nullcontext():
            return await self.driver.time()
