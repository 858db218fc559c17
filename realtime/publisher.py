"""UIManager: the seed's publishing API, for any Python process.

A Celery task says `UIManager.for_user("42").show_toast(...)`; the event is validated here,
appended to the recipient's durable log and announced to every edge process in one Redis
round trip, and the call returns the event id. The synchronous manager shares one
connection per process (a forked child, such as a Celery prefork worker, opens its own);
the async twin keeps one client per event loop.
"""

from __future__ import annotations

import asyncio
import copy
import os
import weakref
from collections.abc import Coroutine
from functools import lru_cache
from typing import Any, Generic, Self, TypeVar

from pydantic import JsonValue

from core.config import Settings, get_settings
from realtime.channels import Recipient
from realtime.eventlog import AsyncEventLog, Durability, EventLog, Retention
from realtime.events import (
    DEFAULT_TTL_SECONDS,
    Modal,
    ModalContent,
    Redirect,
    Refresh,
    Toast,
    ToastVariant,
    Update,
    encode_context,
    encode_event,
)
from realtime.topology import async_client, sync_client

AnyEvent = Redirect | Toast | Refresh | Update | Modal
Result = TypeVar("Result")


def retention_of(settings: Settings) -> Retention:
    return Retention(settings.events_max_len, settings.events_max_age_seconds)


def durability_of(settings: Settings) -> Durability:
    return Durability(settings.events_min_replicas, settings.events_min_replicas_timeout_ms)


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
    settings = get_settings()
    client = sync_client(
        settings.events_url,
        single_connection_client=True,
        health_check_interval=30,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    return EventLog(client, retention_of(settings), durability_of(settings))


_async_logs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEventLog] = (
    weakref.WeakKeyDictionary()
)


async def default_async_event_log() -> AsyncEventLog:
    """One async client per running event loop (an asyncio client cannot cross loops)."""
    loop = asyncio.get_running_loop()
    log = _async_logs.get(loop)
    if log is None:
        settings = get_settings()
        client = await async_client(settings.events_url, health_check_interval=30, socket_timeout=5)
        log = _async_logs.setdefault(
            loop,
            AsyncEventLog(client, retention_of(settings), durability=durability_of(settings)),
        )
    return log


class _Manager(Generic[Result]):
    """The seed's five calls, shared by both twins; `publish` decides sync or async."""

    def __init__(self, recipient: Recipient) -> None:
        self.recipient = recipient
        self._context = ""

    def with_context(self, **context: str) -> Self:
        """A copy whose events also carry these keys, e.g. `jobId=...` for events about a job."""
        twin = copy.copy(self)
        twin._context = encode_context(context)
        return twin

    def _body(self, event: AnyEvent) -> str:
        body = encode_event(event)
        return "{" + self._context + body[1:] if self._context else body

    @classmethod
    def for_user(cls, user_id: str | int) -> Self:
        return cls(Recipient.user(user_id))

    @classmethod
    def for_business(cls, business_id: str | int) -> Self:
        return cls(Recipient.business(business_id))

    @classmethod
    def broadcast(cls) -> Self:
        return cls(Recipient.everyone())

    def publish(
        self,
        event: AnyEvent,
        *,
        ttl: float | None = None,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        raise NotImplementedError

    def redirect(
        self, path: str, *, ttl: float | None = None, idempotency_key: str | None = None
    ) -> Result:
        """Send the browser to `path`."""
        return self.publish(Redirect(target=path), ttl=ttl, idempotency_key=idempotency_key)

    def show_toast(
        self,
        title: str,
        description: str,
        variant: ToastVariant,
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        """Show a toast; variant is success, error, warning or info."""
        toast = Toast(title=title, description=description, variant=variant)
        return self.publish(toast, ttl=ttl, idempotency_key=idempotency_key)

    def refresh(self, *, ttl: float | None = None, idempotency_key: str | None = None) -> Result:
        """Reload the page."""
        return self.publish(Refresh(), ttl=ttl, idempotency_key=idempotency_key)

    def update_ui(
        self,
        data: JsonValue,
        *,
        coalesce_key: str | None = None,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        """Hand `data` to the page's ui-update listeners.

        With `coalesce_key`, a newer update with the same key replaces an older one still
        waiting in a slow client's send buffer (use it for state snapshots, not deltas).
        """
        return self.publish(
            Update(data=data), ttl=ttl, coalesce_key=coalesce_key, idempotency_key=idempotency_key
        )

    def show_modal(
        self,
        modal_type: str,
        payload: JsonValue = None,
        *,
        ttl: float | None = None,
        idempotency_key: str | None = None,
    ) -> Result:
        """Open the modal `modal_type` with `payload`."""
        content = ModalContent(type=modal_type, payload={} if payload is None else payload)
        return self.publish(Modal(data=content), ttl=ttl, idempotency_key=idempotency_key)


class UIManager(_Manager[str]):
    """Publish UI events from synchronous code; each call returns the event id."""

    def __init__(self, recipient: Recipient, log: EventLog | None = None) -> None:
        super().__init__(recipient)
        self._log = log

    def publish(
        self,
        event: AnyEvent,
        *,
        ttl: float | None = None,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Validate, store and announce `event`; raises redis.RedisError if Redis is down.

        A repeat with the same `idempotency_key` within the log's retention returns the
        first call's id and publishes nothing."""
        log = self._log or default_event_log()
        return log.append(
            self.recipient,
            self._body(event),
            ttl_seconds=DEFAULT_TTL_SECONDS[event.type] if ttl is None else ttl,
            coalesce_key=coalesce_key,
            idempotency_key=idempotency_key,
        )


class AsyncUIManager(_Manager[Coroutine[Any, Any, str]]):
    """Publish UI events from asyncio code; each call is awaited for the event id."""

    def __init__(self, recipient: Recipient, log: AsyncEventLog | None = None) -> None:
        super().__init__(recipient)
        self._log = log

    async def publish(
        self,
        event: AnyEvent,
        *,
        ttl: float | None = None,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Validate, store and announce `event`; raises redis.RedisError if Redis is down.

        A repeat with the same `idempotency_key` within the log's retention returns the
        first call's id and publishes nothing."""
        log = self._log or await default_async_event_log()
        return await log.append(
            self.recipient,
            self._body(event),
            ttl_seconds=DEFAULT_TTL_SECONDS[event.type] if ttl is None else ttl,
            coalesce_key=coalesce_key,
            idempotency_key=idempotency_key,
        )
