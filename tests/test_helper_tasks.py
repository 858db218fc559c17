"""A session's reader runs only while a message waits (`edge.pump.HelperTasks`): started by the
socket's notice of an arrival, ended once nothing waits, so an idle socket holds no reader.

What must not happen: a message left unread because it arrived in the instant between the
reader's last look and its task's end, a second reader racing the first, or a reader
started after one failed. These drive `HelperTasks` on a real event loop with a list for the
socket's queue; the real socket's side is tests/test_renewal.py's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.pump import HelperTasks
from tests.harness import eventually

pytestmark = pytest.mark.anyio


class Socket:
    """The socket's queue of messages for the app, and its notice of each arrival."""

    def __init__(self) -> None:
        self.waiting: list[str] = []
        self.received: list[str] = []
        self.readers_at_once = 0
        self.most_readers_at_once = 0
        self.helpers: HelperTasks | None = None
        self.arriving_as_the_reader_returns: str | None = None

    def arrive(self, message: str) -> None:
        self.waiting.append(message)
        assert self.helpers is not None
        self.helpers.message_arrived()

    async def read(self, _expiry: Any) -> None:
        """`SocketClient.read`'s shape: read while a message waits, then return."""
        self.readers_at_once += 1
        self.most_readers_at_once = max(self.most_readers_at_once, self.readers_at_once)
        try:
            while self.waiting:
                await asyncio.sleep(0)  # a renewal's token check: other callbacks run
                message = self.waiting.pop(0)
                if message == "boom":
                    raise ConnectionResetError("the peer left")
                self.received.append(message)
        finally:
            self.readers_at_once -= 1
            if (late := self.arriving_as_the_reader_returns) is not None:
                self.arriving_as_the_reader_returns = None
                # Queued now, it runs after this return (or raise) and before the task's
                # done callback.
                asyncio.get_running_loop().call_soon(self.arrive, late)


def helpers_for(socket: Socket) -> HelperTasks:
    socket.helpers = HelperTasks(socket, expiry=None)  # type: ignore[arg-type]
    return socket.helpers


async def test_a_message_arriving_as_the_reader_returns_is_read_by_a_new_reader() -> None:
    """The worst moment: the reader has seen an empty queue and returned, and its task's end
    is not yet known (its done callback runs later in the loop's queue) when a message
    arrives. Judged by the task's end, a reader would seem to be running, and the message
    would wait until the client sent another."""
    socket = Socket()
    helpers = helpers_for(socket)
    socket.arriving_as_the_reader_returns = "second"
    socket.arrive("first")
    await eventually(lambda: socket.received == ["first", "second"] and helpers.running() == 0)
    await helpers.stop()


async def test_a_burst_is_read_in_order_by_one_reader_at_a_time_and_none_is_left() -> None:
    socket = Socket()
    helpers = helpers_for(socket)
    loop = asyncio.get_running_loop()
    burst = [f"m{n}" for n in range(500)]
    for n, message in enumerate(burst):
        # Spread over the loop's iterations: some while a reader runs, some after it ended.
        loop.call_later(0.001 * (n % 7), socket.arrive, message)
    await eventually(lambda: len(socket.received) == len(burst) and helpers.running() == 0)
    assert sorted(socket.received, key=lambda m: int(m[1:])) == burst
    assert socket.most_readers_at_once == 1
    await helpers.stop()


async def test_an_idle_socket_holds_no_helper_task() -> None:
    socket = Socket()
    helpers = helpers_for(socket)
    socket.arrive("hello")
    assert helpers.running() == 1
    await eventually(lambda: helpers.running() == 0)
    assert socket.received == ["hello"]
    await helpers.stop()


async def test_the_readers_error_is_kept_and_no_reader_starts_after_it() -> None:
    socket = Socket()
    helpers = helpers_for(socket)
    socket.arrive("boom")
    await eventually(lambda: helpers.error is not None and helpers.running() == 0)
    assert isinstance(helpers.error, ConnectionResetError)
    socket.arrive("after")
    assert helpers.running() == 0
    assert socket.received == []
    await helpers.stop()


async def test_a_message_arriving_as_the_reader_raises_starts_no_other_reader() -> None:
    """The peer left (the reader raised) and another message comes before the reader's task
    is known to have ended, as uvicorn queues a second disconnect for a close frame: no
    reader may start to read past the end of the session."""
    socket = Socket()
    helpers = helpers_for(socket)
    socket.arriving_as_the_reader_returns = "second disconnect"
    socket.arrive("boom")
    await eventually(lambda: helpers.running() == 0 and socket.waiting == ["second disconnect"])
    assert isinstance(helpers.error, ConnectionResetError)
    await helpers.stop()


async def test_stopping_cancels_a_reader_in_the_middle_of_a_message() -> None:
    socket = Socket()
    helpers = helpers_for(socket)
    socket.arrive("slow")
    assert helpers.running() == 1
    await helpers.stop()
    await eventually(lambda: helpers.running() == 0)
    assert helpers.error is None  # a cancelled reader is no error for `pump` to raise
