"""asyncio's Event and Queue without their per-instance allocations.

An edge keeps tens of thousands of sockets open for hours, and each holds a few wakeups for
as long as it is open: its connection's writer signal, and in `insight edge`'s protocol the
ASGI receive queue and the writable flag. An asyncio.Queue allocates three deques and an
Event up front, and an asyncio.Event a deque: with the handshake's request and response
headers (which that protocol drops), they were a large share of an idle connection's memory
(the figure, and how it was measured: bench/results/design-figures.md). These hold a list of
futures only while a coroutine waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

_PRUNE_AT = 8  # waiters listed before the cancelled ones are first dropped


class Signal:
    """Wakes every coroutine waiting on it; holds a list of futures only while some wait.

    The lightest wakeup for state that lives as long as a socket: an asyncio.Event allocates
    a deque up front, this nothing until someone waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    def wait(self) -> asyncio.Future[None]:
        """A future the next `fire` resolves. A future rather than a coroutine, so that a
        writer that waits for hours holds no coroutine frame. One whose waiter was cancelled
        stays listed, done, until the next `fire` or until enough pile up to be pruned."""
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = [future]
            return future
        size = len(waiters)
        if size >= _PRUNE_AT and size & (size - 1) == 0:  # at 8, 16, 32...: O(1) a wait
            waiters[:] = [waiter for waiter in waiters if not waiter.done()]
        waiters.append(future)
        return future

    def waiting(self) -> int:
        """How many futures are listed (some may be done): what a wait costs until a fire."""
        return len(self._waiters or ())

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)


class Inbox:
    """The part of asyncio.Queue that uvicorn's protocol uses (put_nowait, get, empty),
    without the deques and the Event a Queue allocates up front; `notify`, if set, is called
    after each put, so that a consumer need not wait in `get` to learn of one."""

    __slots__ = ("_arrived", "_items", "notify")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._arrived = Signal()
        self.notify: Callable[[], None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._arrived.fire()
        if self.notify is not None:
            self.notify()

    async def get(self) -> Any:
        while not self._items:
            await self._arrived.wait()
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items


class Flag:
    """asyncio.Event's is_set, set, clear and wait, without the deque an Event allocates."""

    __slots__ = ("_changed", "_set")

    def __init__(self) -> None:
        self._set = False
        self._changed = Signal()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        self._changed.fire()

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        while not self._set:
            await self._changed.wait()
