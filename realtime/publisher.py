"""UIManager: the seed's publishing API, for any Python process.

A Celery task says `UIManager.for_user("42").show_toast(...)`; the event is validated here,
appended to the recipient's durable log and announced to every edge process in one Redis
round trip, and the call returns the event id. The synchronous manager shares one
connection per process (a forked child, such as a Celery prefork worker, opens its own);
the async twin keeps one client per event loop. Both read only the library's own settings
(`realtime.settings`).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from realtime import presence, revocation
from realtime.broker.topology import async_client, is_cluster_async, sync_client
from realtime.eventlog import AsyncEventLog, EventLog, Retention
from realtime.events import Event
from realtime.manager import Manager
from realtime.options import DEFAULT_OPTIONS, PublishOptions
from realtime.recipients import Recipient
from realtime.settings import events_settings

if TYPE_CHECKING:  # at run time only `after_commit` imports SQLAlchemy, and only when called
    from sqlalchemy.orm import Session

    from realtime.after_commit import AfterCommitUIManager


def default_event_log() -> EventLog:
    """The log UIManager uses when none is given: one per process."""
    return event_log_of_process(os.getpid())


@lru_cache(maxsize=1)
def event_log_of_process(pid: int) -> EventLog:
    """One Redis connection, not a pool, for the process `pid`: taking a connection from a
    pool and giving it back cost more CPU per publish than a sequence of locks around one
    connection (redis-py's `single_connection_client`, safe across threads). Keyed by pid,
    so a forked child (a Celery prefork worker) never writes on its parent's socket. On a
    Redis Cluster, redis-py's cluster client (a connection per master it writes to)."""
    settings = events_settings()
    client = sync_client(
        settings.events_url,
        single_connection_client=True,
        health_check_interval=30,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    return EventLog(client, settings.retention, settings.durability)


_async_logs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEventLog] = (
    weakref.WeakKeyDictionary()
)


_async_logs_making: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncEventLog]] = {}
# The default async client's connections: on one Redis, a call past them waits up to
# POOL_WAIT_SECONDS for one rather than failing; on a cluster, a call past them on one node
# fails.
ASYNC_CONNECTIONS = 64
ASYNC_CLUSTER_CONNECTIONS = 1000
POOL_WAIT_SECONDS = 5


async def default_async_event_log() -> AsyncEventLog:
    """One async client per running event loop (an asyncio client cannot cross loops).

    A burst of first calls shares one making of it, and its failure (a Redis that does not
    answer): each call gets the error together, and the next call tries again."""
    loop = asyncio.get_running_loop()
    log = _async_logs.get(loop)
    if log is not None:
        return log
    making = _async_logs_making.get(loop)
    if making is None:
        making = _async_logs_making[loop] = loop.create_task(_new_async_event_log())
        making.add_done_callback(_made)
    return await asyncio.shield(making)


async def _new_async_event_log() -> AsyncEventLog:
    settings = events_settings()
    cluster = await is_cluster_async(settings.events_url)
    client = await async_client(
        settings.events_url,
        health_check_interval=30,
        socket_timeout=5,
        wait_for_connection=POOL_WAIT_SECONDS,
        max_connections=ASYNC_CLUSTER_CONNECTIONS if cluster else ASYNC_CONNECTIONS,
    )
    return AsyncEventLog(client, settings.retention, durability=settings.durability)


def _made(making: asyncio.Task[AsyncEventLog]) -> None:
    loop = making.get_loop()
    _async_logs_making.pop(loop, None)
    if not making.cancelled() and making.exception() is None:
        _async_logs[loop] = making.result()


def ttl_of(event: Event, ttl: float | None, retention: Retention) -> float:
    """How long an event stays worth replaying: `ttl` when given, else its type's default,
    which a log kept for less time than that (EVENTS_MAX_AGE_SECONDS) shortens."""
    if ttl is not None:
        return ttl
    return min(event.default_ttl_seconds, retention.max_age_seconds)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What `UIManager.deliver` published: the event's id, and whether its recipient had a
    connection open on some edge right after it was published (see `deliver` for the race)."""

    id: str
    live: bool


class UIManager(Manager[str]):
    """Publish UI events from synchronous code; each call returns the event id."""

    def __init__(self, recipient: Recipient, log: EventLog | None = None) -> None:
        super().__init__(recipient)
        self._log = log

    @property
    def log(self) -> EventLog:
        return self._log or default_event_log()

    def after_commit(self, session: Session) -> AfterCommitUIManager:
        """A twin whose calls wait for `session` to commit, and are dropped if it does not.

        `ui.after_commit(session).show_toast(...)` returns None at once; the toast is
        published after the COMMIT of the session's transaction, in the order of the calls,
        so a page that reacts to it finds the committed rows. A rolled-back SAVEPOINT drops
        only the events queued inside it. A publish that fails after the commit raises its
        Redis error out of `session.commit()`. See `realtime.after_commit`."""
        from realtime.after_commit import AfterCommitUIManager

        return AfterCommitUIManager(self, session)

    def publish(self, event: Event, options: PublishOptions = DEFAULT_OPTIONS) -> str:
        """Validate, store and announce `event`; raises redis.RedisError if Redis is down.

        A repeat with the same idempotency key within the log's retention returns the
        first call's id and publishes nothing."""
        body = self.body(event)  # refused before any Redis call
        log = self.log
        ttl = ttl_of(event, options.ttl, log.retention)
        return log.append(self.recipient, body, ttl, self.scoped(options))

    # -- presence and disconnect (realtime.presence) ------------------------------------

    def connections(self) -> int:
        """The user's open sockets on every edge (a business: all its members')."""
        return presence.connections(self.log.driver, self.recipient)

    def is_online(self) -> bool:
        """Whether the user (a business: any member) has a socket open on some edge."""
        return self.connections() > 0

    def disconnect(self) -> int:
        """Close every socket of the user on every edge (4401 `revoked`, within a second)
        and refuse the user's tokens issued up to now, at the edges and the API; returns
        the mark: tokens whose `iat` is at most this (Unix seconds, the Redis clock)."""
        keep = events_settings().revocation_keep_seconds
        return revocation.revoke(self.log.driver, self.recipient, keep)

    def deliver(
        self,
        event: Event,
        options: PublishOptions = DEFAULT_OPTIONS,
        *,
        if_offline: Callable[[], object] | None = None,
    ) -> Delivery:
        """Publish `event`, then tell whether the recipient was connected to get it live;
        if not, call `if_offline` (send an email instead).

        Presence is read right after the publish, so in the round trip between them: a
        socket that opens without `since` counts as live without getting the event (one that
        resumes with `since` does get it), and one that closes counts as offline though it
        was sent the event (the fallback then runs as well). An edge killed with kill -9
        counts its users live for up to PRESENCE_TTL_SECONDS. A repeated idempotency key
        publishes nothing but reads presence, and may call `if_offline`, again."""
        event_id = self.publish(event, options)
        live = self.is_online()
        if not live and if_offline is not None:
            if_offline()
        return Delivery(event_id, live)


class AsyncUIManager(Manager[Coroutine[Any, Any, str]]):
    """Publish UI events from asyncio code; each call is awaited for the event id."""

    def __init__(self, recipient: Recipient, log: AsyncEventLog | None = None) -> None:
        super().__init__(recipient)
        self._log = log

    async def log(self) -> AsyncEventLog:
        return self._log or await default_async_event_log()

    async def publish(self, event: Event, options: PublishOptions = DEFAULT_OPTIONS) -> str:
        """`UIManager.publish` for asyncio code."""
        body = self.body(event)  # refused before any Redis call
        log = await self.log()
        ttl = ttl_of(event, options.ttl, log.retention)
        return await log.append(self.recipient, body, ttl, self.scoped(options))

    async def connections(self) -> int:
        """The user's open sockets on every edge (a business: all its members')."""
        return await presence.connections_async((await self.log()).driver, self.recipient)

    async def is_online(self) -> bool:
        """Whether the user (a business: any member) has a socket open on some edge."""
        return await self.connections() > 0

    async def disconnect(self) -> int:
        """`UIManager.disconnect`: close the user's sockets everywhere, refuse older tokens."""
        keep = events_settings().revocation_keep_seconds
        return await revocation.revoke_async((await self.log()).driver, self.recipient, keep)

    async def deliver(
        self,
        event: Event,
        options: PublishOptions = DEFAULT_OPTIONS,
        *,
        if_offline: Callable[[], object] | None = None,
    ) -> Delivery:
        """`UIManager.deliver` (same race); `if_offline` may be a coroutine function."""
        event_id = await self.publish(event, options)
        live = await self.is_online()
        if not live and if_offline is not None:
            result = if_offline()
            if inspect.isawaitable(result):
                await result
        return Delivery(event_id, live)
