"""When each open session's token stops being accepted: one timer for every session of the
process, not one each.

A session ends with 4401 once its token is no longer accepted (`exp` plus the leeway,
`core.security.accepted_until`), and an in-band renewal moves that moment. A timer per session
costs about 650 bytes under uvloop (its handle, libuv's timer, a copy of the context), held for
the session's life: 12 MB at 19,000 connections. Here a session waits in the bucket of its
deadline's second, rounded up, and one timer fires at the earliest second that has a bucket:
a session closes within a second after its token stops being accepted, never before it. A
move is two set operations.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref

from edge.close_codes import CloseCode
from edge.connection import ClientConnection


class Expiry:
    """Closes the connection with 4401 when its token is no longer accepted; `move` for a
    renewal, `cancel` when the session ends."""

    __slots__ = ("_connection", "_second")

    def __init__(self, connection: ClientConnection, until: float) -> None:
        self._connection = connection
        self._second: int | None = None
        self.move(until)

    def move(self, until: float) -> None:
        """From now on, close at `until` (wall-clock seconds) instead."""
        self.cancel()
        self._second = _deadlines().add(self, until)

    def cancel(self) -> None:
        if self._second is not None:
            _deadlines().discard(self, self._second)
            self._second = None

    def expired(self) -> None:
        self._second = None
        self._connection.close(CloseCode.UNAUTHORIZED)


class Deadlines:
    """The sessions of one event loop by the second their tokens stop being accepted."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[Expiry]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None

    def add(self, expiry: Expiry, until: float) -> int:
        """Keep `expiry` until `until`; the second it waits for (to `discard` it with)."""
        second = math.ceil(until)
        self._buckets.setdefault(second, set()).add(expiry)
        if self._armed_for is None or second < self._armed_for:
            self._arm(second)
        return second

    def discard(self, expiry: Expiry, second: int) -> None:
        bucket = self._buckets.get(second)
        if bucket is not None:
            bucket.discard(expiry)
            if not bucket:
                del self._buckets[second]  # an armed timer that finds nothing re-arms

    def _arm(self, second: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(max(0.0, second - time.time()), self._fire)
        self._armed_for = second

    def _fire(self) -> None:
        self._timer = self._armed_for = None
        now = time.time()
        for second in sorted(s for s in self._buckets if s <= now):
            for expiry in self._buckets.pop(second):
                expiry.expired()
        if self._buckets:
            self._arm(min(self._buckets))


_of_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = (
    weakref.WeakKeyDictionary()
)


def _deadlines() -> Deadlines:
    loop = asyncio.get_running_loop()
    deadlines = _of_loop.get(loop)
    if deadlines is None:
        deadlines = _of_loop[loop] = Deadlines(loop)
    return deadlines
