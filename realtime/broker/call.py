"""One Redis call, built once and run by either driver (`realtime.broker.drivers`).

Every write and read Insight makes in Redis is a Lua script over the keys of one recipient
(they share a hash slot, `realtime.recipients`), or a plain command. A `Call` holds the script,
its keys and arguments, and how to read the reply: what the call means is written once, in
`log_calls` and `presence_calls`, and the sync driver (Celery tasks, scripts) and the async
one (the edge, the API) only move it over the wire. That is how redis-py and httpx keep their
sync and async twins thin.

A `Lua` script is run by its SHA1 and sent whole only to a node that does not have it yet (a
restarted Redis, a new master after a failover).

Writes are safe to repeat (an append carries its idempotency key, presence writes are
absolute, a revocation mark only grows), so a driver tries a call again while its slot is
moving (`ride_through`), and a write that must outlive a failover (`durable`) returns only
once EVENTS_MIN_REPLICAS replicas hold it (`Durability`), else raises `NotReplicated`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

T = TypeVar("T")


class Lua:
    """A script's text and its SHA1 (EVALSHA first, the text only for a node without it)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """A script over one slot's `keys` (the first names the slot), and its reply's meaning."""

    script: Lua
    keys: list[str]
    args: list[str | int]
    parse: Callable[[Any], T]
    durable: bool = False  # a write that must reach EVENTS_MIN_REPLICAS replicas


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold a durable write before it returns (0: the master)."""

    min_replicas: int = 0
    timeout_ms: int = 1000


MASTER_ONLY = Durability()  # a write returns once the master has it


class NotReplicated(redis.RedisError):
    """Fewer replicas than EVENTS_MIN_REPLICAS confirmed the write in time."""


def replicated(reply: Any, replicas: object, durability: Durability) -> Any:
    """`reply`, if WAIT counted enough `replicas`; else NotReplicated."""
    if not isinstance(replicas, int) or replicas < durability.min_replicas:
        raise NotReplicated(
            f"{replicas} of {durability.min_replicas} replicas confirmed the write in "
            f"{durability.timeout_ms} ms"
        )
    return reply


REDIRECTS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)
# A slot that is moving (a migration, a failover): redis-py's cluster client follows
# redirects a bounded number of times, quickly, then raises ClusterError ("TTL exhausted"),
# and a script whose keys a migration has split gets TRYAGAIN until they are together again.
MOVING = (*REDIRECTS, redis.exceptions.ClusterError)
RIDE_THROUGH_SECONDS = 2.0  # how long a call keeps trying a slot that is moving


def ride_through(call: Callable[[], T], on_moved: Callable[[], object] = lambda: None) -> T:
    """`call()`, tried again while its slot is moving, for RIDE_THROUGH_SECONDS at most.
    `on_moved` runs before each new try (to re-read the slot map)."""
    deadline = time.monotonic() + RIDE_THROUGH_SECONDS
    delay = 0.01
    while True:
        try:
            return call()
        except MOVING:
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.25)
        on_moved()


async def ride_through_async(
    call: Callable[[], Awaitable[T]],
    on_moved: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """`ride_through` for asyncio code."""
    deadline = time.monotonic() + RIDE_THROUGH_SECONDS
    delay = 0.01
    while True:
        try:
            return await call()
        except MOVING:
            if time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 0.25)
        if on_moved is not None:
            await on_moved()


def as_text(value: object) -> str:
    """A Redis reply (bytes, or already text) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
