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
import inspect
import os
import weakref
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from pydantic import JsonValue

from core.config import Settings, get_settings
from realtime import presence
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
from realtime.presence import Delivery
from realtime.recipients import Recipient
from realtime.topology import async_client, sync_client

if TYPE_CHECKING:  # at run time only `after_commit` imports SQLAlchemy, and only when called
    from sqlalchemy.orm import Session

    from realtime.after_commit import AfterCommitUIManager

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

    def after_commit(self, session: Session) -> AfterCommitUIManager:
        """A twin whose calls wait for `session` to commit, and are dropped if it does not.

        `ui.after_commit(session).show_toast(...)` returns None at once; the toast is
        published after the COMMIT of the session's transaction, in the order of the calls,
        so a page that reacts to it finds the committed rows. A rolled-back SAVEPOINT drops
        only the events queued inside it. A publish that fails after the commit raises its
        Redis error out of `session.commit()`. See `realtime.after_commit`."""
        from realtime.after_commit import AfterCommitUIManager

        return AfterCommitUIManager(self, session)

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

    # -- presence and disconnect (realtime.presence) ------------------------------------

    def connections(self) -> int:
        """The user's open sockets on every edge (a business: all its members')."""
        return presence.connections((self._log or default_event_log()).client, self.recipient)

    def is_online(self) -> bool:
        """Whether the user (a business: any member) has a socket open on some edge."""
        return self.connections() > 0

    def disconnect(self) -> int:
        """Close every socket of the user on every edge (4401 `revoked`, within a second)
        and refuse the user's tokens issued up to now, at the edges and the API; returns
        the mark: tokens whose `iat` is at most this (Unix seconds, the Redis clock)."""
        log = self._log or default_event_log()
        return presence.revoke(log, self.recipient, get_settings().revocation_keep_seconds)

    def deliver(
        self,
        event: AnyEvent,
        *,
        if_offline: Callable[[], object] | None = None,
        ttl: float | None = None,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Delivery:
        """Publish `event`, then tell whether the recipient was connected to get it live;
        if not, call `if_offline` (send an email instead).

        Presence is read right after the publish, so in the round trip between them: a
        socket that opens without `since` counts as live without getting the event (one that
        resumes with `since` does get it), and one that closes counts as offline though it
        was sent the event (the fallback then runs as well). An edge killed with kill -9
        counts its users live for up to PRESENCE_TTL_SECONDS. A repeated idempotency key
        publishes nothing but reads presence, and may call `if_offline`, again."""
        event_id = self.publish(
            event, ttl=ttl, coalesce_key=coalesce_key, idempotency_key=idempotency_key
        )
        live = self.is_online()
        if not live and if_offline is not None:
            if_offline()
        return Delivery(event_id, live)


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

    # -- presence and disconnect (realtime.presence) ------------------------------------

    async def connections(self) -> int:
        """The user's open sockets on every edge (a business: all its members')."""
        log = self._log or await default_async_event_log()
        return await presence.connections_async(log.client, self.recipient)

    async def is_online(self) -> bool:
        """Whether the user (a business: any member) has a socket open on some edge."""
        return await self.connections() > 0

    async def disconnect(self) -> int:
        """`UIManager.disconnect`: close the user's sockets everywhere, refuse older tokens."""
        log = self._log or await default_async_event_log()
        keep = get_settings().revocation_keep_seconds
        return await presence.revoke_async(log, self.recipient, keep)

    async def deliver(
        self,
        event: AnyEvent,
        *,
        if_offline: Callable[[], object] | None = None,
        ttl: float | None = None,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> Delivery:
        """`UIManager.deliver` (same race); `if_offline` may be a coroutine function."""
        event_id = await self.publish(
            event, ttl=ttl, coalesce_key=coalesce_key, idempotency_key=idempotency_key
        )
        live = await self.is_online()
        if not live and if_offline is not None:
            result = if_offline()
            if inspect.isawaitable(result):
                await result
        return Delivery(event_id, live)
