"""The edge's WebSocket protocol: uvicorn's sans-I/O one, plus a way to write an encoded
frame straight to a socket.

Through ASGI, each event delivered to a socket costs a wakeup of that connection's writer
task, a message dict, Starlette's and uvicorn's state checks, and a frame object built and
serialised by websockets for that one socket. Yet a server's text frame is not masked, so it
is the same bytes for every receiver: the hub encodes it once per event (`text_frame`) and,
while a connection has nothing queued and its transport takes data, writes those bytes to
the socket from the fan-out itself (`FrameWriter.write_frame`). Anything else (a backlog, a
replay, a paused transport, a closing socket) goes through the connection's writer task, which
waits for the transport to drain (`wait_writable`) and then writes its backlog in one call.

The edge's ASGI app finds the writer in the WebSocket's scope under `WIRE_EXTENSION`; served
any other way (another ASGI server), it is absent and frames go through ASGI sends.

The protocol also holds less per socket than uvicorn's: an edge keeps tens of thousands open
for hours, and an asyncio.Queue (three deques and an Event), an asyncio.Event (a deque) and
the handshake's request and response headers were a quarter of each idle connection's memory.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Protocol

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

WIRE_EXTENSION = "insight.wire"

_TEXT_FIN = 0x81  # FIN bit and the text opcode; the mask bit stays 0 (RFC 6455, 5.1)


def text_frame(payload: bytes) -> bytes:
    """One complete, unmasked WebSocket text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return bytes((_TEXT_FIN, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _TEXT_FIN, 126, size) + payload
    return struct.pack("!BBQ", _TEXT_FIN, 127, size) + payload


class FrameWriter(Protocol):
    def write_frame(self, frame: bytes) -> bool:
        """Write encoded frames now if the socket is open and its transport is not paused;
        False (nothing written) otherwise."""
        ...

    async def wait_writable(self) -> None:
        """Return once the transport takes data again (at once if it does now)."""
        ...


class Signal:
    """Wakes every coroutine waiting on it; holds a list of futures only while some wait.

    The lightest wakeup for state that lives as long as a socket: an asyncio.Event allocates
    a deque up front, this nothing until someone waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append(future)
        try:
            await future
        finally:
            if future.cancelled() and self._waiters is waiters:
                waiters.remove(future)

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            if not future.done():
                future.set_result(None)


class Inbox:
    """The part of asyncio.Queue that uvicorn's protocol uses (put_nowait, get, empty),
    without the deques and the Event a Queue allocates up front."""

    __slots__ = ("_arrived", "_items")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._arrived = Signal()

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._arrived.fire()

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


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol that also offers itself as the socket's
    `FrameWriter`. It only adds a way to write data frames and trims what it holds: the
    handshake, pings, closing and flow control stay uvicorn's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            # The ASGI task is created but has not run yet, so it sees the extension.
            extensions: dict[str, object] = self.scope["extensions"]  # type: ignore[assignment]
            extensions[WIRE_EXTENSION] = self
        # websockets' parser keeps the request alive for as long as the socket is open (it
        # is a local of the parsing generator); the scope has its own copy of the headers.
        event.headers.clear()

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake is done: its request and response are never read again.
            del self.request, self.response

    def write_frame(self, frame: bytes) -> bool:
        if (
            not self.writable.is_set()
            or self.close_sent
            or self.disconnected
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.write(frame)
        return True

    async def wait_writable(self) -> None:
        await self.writable.wait()
