"""The seam between Insight and what its events travel through: the broker.

Three parts, as centrifuge draws its `Broker` and `PresenceManager`:

- the **log store**: each recipient's durable log: append, replay a page, the clock;
- the **live feed**: the edge's subscriptions to recipients' live channels (hold, release),
  delivering each announcement to a `Listener`, and telling it when channels stop and
  resume flowing;
- the **presence store**: who is connected where, the per-user cap, revocation marks;
- the **ticket store**: stream tickets, each spent once on whichever edge (`ticket_calls`).

Implementations: Redis, one server or a cluster (`realtime.broker.redis_broker`; the calls
themselves, built once for both, are `log_calls` and `presence_calls`, run by `drivers`), and
in memory (`realtime.broker.memory`), which drives fast tests of the edge's delivery state
machine; the guarantees are tested against real Redis processes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from realtime.broker.admission_calls import Admission
from realtime.broker.log_calls import Page
from realtime.broker.presence_calls import Entry, Marks, Stamp
from realtime.frames import Position
from realtime.options import PublishOptions
from realtime.recipients import Recipient

__all__ = [
    "Admission",
    "Broker",
    "Entry",
    "Listener",
    "LiveFeed",
    "LogStore",
    "Marks",
    "Page",
    "PresenceStore",
    "Stamp",
    "TicketStore",
]


class LogStore(Protocol):
    """Each recipient's durable log (see `log_calls` for what it keeps)."""

    async def append(
        self, recipient: Recipient, body: str, ttl: float, options: PublishOptions
    ) -> str:
        """Store and announce one event; its id."""
        ...

    async def replay_page(
        self,
        recipient: Recipient,
        after: Position,
        *,
        check: bool,
        max_entries: int,
        max_bytes: int,
    ) -> Page:
        """A page of the recipient's log after `after`."""
        ...

    async def server_time(self) -> tuple[int, int]:
        """The log's clock (seconds, microseconds): what new ids are taken from."""
        ...


class Listener(Protocol):
    """What the live feed tells (the edge's hub)."""

    def on_message(self, channel: bytes, data: bytes) -> None:
        """An announcement on a held channel (`realtime.frames.parse_announcement`)."""

    def on_lost(self, channels: set[bytes]) -> None:
        """These channels stopped flowing: what is published meanwhile is missed live."""

    def on_restored(self, channels: set[bytes]) -> None:
        """These channels flow again: catch their connections up from the logs."""


class LiveFeed(Protocol):
    """The subscriptions to live channels, counted: held by the first, released by the last."""

    def start(self, listener: Listener) -> None:
        """Begin delivering to `listener`."""

    def hold(self, channel: bytes) -> asyncio.Future[None] | None:
        """Hold `channel`; await the future (if any) for the subscription to take effect.
        The hold counts at once: a caller that gives up must still release."""
        ...

    def release(self, channel: bytes) -> None:
        """Drop one hold; the last one out unsubscribes."""

    @property
    def healthy(self) -> bool:
        """Every held channel is subscribed on a connected node."""
        ...

    @property
    def channel_count(self) -> int: ...

    @property
    def reconnects(self) -> int: ...

    async def close(self) -> None: ...


class PresenceStore(Protocol):
    """Who is connected on every edge, the per-user cap and revocation marks (see
    `presence_calls`); the edge's counting is `edge.presence`."""

    async def enter(
        self,
        user_id: str,
        issued_at: float | None,
        count: int,
        cap: int,
        by: Stamp,
        tab: tuple[str, int] | None = None,
    ) -> Admission:
        """Admit a connection of the user on the edge (its count there becoming `count`; a
        tab's, `tab`: its id and its count there)."""
        ...

    async def put(self, entries: dict[Entry, int], by: Stamp) -> Marks:
        """Write this edge's counts; the revocation marks held for their users."""
        ...

    async def revocation_mark(self, user_id: str) -> int | None:
        """The user's revocation mark, if one is held."""
        ...


class TicketStore(Protocol):
    """Stream tickets of users: kept for a while, spent once (see `ticket_calls`)."""

    async def issue(self, user_id: str, secret: str, identity: str, ttl_ms: int) -> None:
        """Keep the user's ticket `secret`, standing for `identity`, for `ttl_ms`."""

    async def spend(self, user_id: str, secret: str) -> str | None:
        """The identity of the user's ticket `secret`, once; None if unknown or spent."""
        ...


class Broker(Protocol):
    """The parts, and the broker's own life."""

    @property
    def log(self) -> LogStore: ...

    @property
    def live(self) -> LiveFeed: ...

    @property
    def presence(self) -> PresenceStore: ...

    @property
    def tickets(self) -> TicketStore: ...

    async def ping(self) -> bool:
        """Whether the broker answers (readiness)."""
        ...

    async def close(self) -> None: ...
