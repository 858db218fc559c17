"""Timers kept to the second for every connection of a process, on one asyncio timer.

Each open socket waits on two timers for as long as it lives: its token's expiry
(`edge.expiry`) and its next keepalive ping (`edge.protocols.websocket`). A timer of the event
loop costs about 650 bytes under uvloop (its handle, libuv's timer, a copy of the context): 25 MB
at 19,000 connections for the two. Neither needs more than a second's precision, so each waits
in the bucket of its second, rounded up (it fires within a second after its time, never
before), and one loop timer fires at the earliest second that has a bucket. Adding and
cancelling are set operations.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from typing import Protocol

logger = logging.getLogger(__name__)


class Due(Protocol):
    def fire(self) -> None:
        """Its second has come."""


class SecondWheel:
    """The timers of one event loop, by the second of the loop's clock (monotonic, so a step
    of the wall clock moves none of them) they fire at."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[Due]] = {}
        self._timer: asyncio.TimerHandle | None = None  # at the earliest bucket's second

    def add(self, due: Due, at: float) -> int:
        """Fire `due` once, within a second after `at` (the loop's time); the second it waits
        for (to `discard` it with)."""
        second = math.ceil(at)
        self._buckets.setdefault(second, set()).add(due)
        if self._timer is None or second < self._timer.when():
            self._arm(second)
        return second

    def discard(self, due: Due, second: int) -> None:
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.discard(due)
            if not bucket:
                del self._buckets[second]  # an armed timer that finds nothing re-arms

    def time(self) -> float:
        return self._loop.time()

    @property
    def waiting(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    @property
    def seconds(self) -> int:
        return len(self._buckets)

    def _arm(self, second: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(second, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        try:
            for second in sorted(s for s in self._buckets if s <= now):
                for due in self._buckets.pop(second):
                    try:
                        due.fire()
                    except Exception:  # one timer's failure is its own, as the loop's are
                        logger.exception("a timer failed")
        finally:
            if self._buckets:
                self._arm(min(self._buckets))


_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SecondWheel] = (
    weakref.WeakKeyDictionary()
)


def second_wheel() -> SecondWheel:
    """The running loop's wheel."""
    loop = asyncio.get_running_loop()
    wheel = _of_loop.get(loop)
    if wheel is None:
        wheel = _of_loop[loop] = SecondWheel(loop)
    return wheel


class OnTheWheel:
    """A timer kept to the second on the running loop's wheel, `cancel`led as a TimerHandle
    is. What firing does is a subclass's `expired`, with what it needs in slots of its own:
    a bound method for a callback would be 64 bytes more per timer, per socket."""

    __slots__ = ("_second", "_wheel")

    def __init__(self) -> None:
        self._wheel = second_wheel()
        self._second: int | None = None  # the second it waits for; None: not armed

    def start(self, delay: float) -> None:
        """Fire within a second after `delay` seconds from now, instead of when it would."""
        self.cancel()
        self._second = self._wheel.add(self, self._wheel.time() + delay)

    def cancel(self) -> None:
        if self._second is not None:
            self._wheel.discard(self, self._second)
            self._second = None

    def fire(self) -> None:
        # Not if it was cancelled since its bucket was taken: by another timer of its second.
        if self._second is not None:
            self._second = None
            self.expired()

    def expired(self) -> None:
        raise NotImplementedError


class WheelTimer(OnTheWheel):
    """`loop.call_later(delay, callback)` kept to the second on the wheel."""

    __slots__ = ("_callback",)

    def __init__(self, delay: float, callback: Callable[[], object]) -> None:
        super().__init__()
        self._callback = callback
        self.start(delay)

    def expired(self) -> None:
        self._callback()
