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

Hostile handshakes (DESIGN.md: "Hostile input never hangs, crashes or leaks"). uvicorn, as of
0.54, leaves two holes that let a client hold a socket and its file descriptor for ever:

- websockets refuses a request line or header line over its limit (`MAX_LINE_LENGTH`, 8 KiB)
  or too many headers by queueing a 414 or 431 and sending nothing more, but uvicorn only
  writes websockets' output once a request has parsed: the refusal was never written, and
  the TCP connection stayed open. `EdgeWebSocketProtocol` writes it and closes.
- Its HTTP protocol (httptools) bounds a request head neither in time nor in size: a client
  that sends it a byte at a time (slowloris), or sends nothing, holds the socket, and a 1 MB
  header is buffered and answered. `EdgeHttpProtocol` gives every head
  WS_HANDSHAKE_TIMEOUT_SECONDS from its first byte (from the accept, for a new connection)
  and `MAX_HEAD_BYTES`, then answers 408, 414 or 431 and closes.

A text message that is not UTF-8 is closed 4400 (malformed), like any other malformed first
frame, instead of uvicorn's 1007 with an error and its traceback logged for every one. And a
connection failed for a protocol error (1009 for a message over WS_MAX_MESSAGE_BYTES) is
half-closed and drained rather than closed at once, so that the peer reads its close code
(see `EdgeWebSocketProtocol.handle_parser_exception`).
"""

from __future__ import annotations

import asyncio
import struct
from http import HTTPStatus
from typing import Any, Protocol

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from realtime.protocol import CloseCode

WIRE_EXTENSION = "insight.wire"

# The most a request head (request line and headers) may take, all lines together. Each line
# of a WebSocket handshake is also held to websockets' MAX_LINE_LENGTH (8 KiB); browsers send
# heads of 1 to 4 KiB, cookies included.
MAX_HEAD_BYTES = 64 * 1024
# After failing a connection (a protocol error), how long to wait for the peer to close its
# half of the TCP connection before closing ours anyway.
CLOSE_LINGER_SECONDS = 2.0

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

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            self._refuse_handshake()

    def _refuse_handshake(self) -> None:
        """websockets could not take the request (a line over MAX_LINE_LENGTH: 414 or 431;
        too many headers: 431; a head it cannot parse: nothing queued, so 400): write its
        answer, which uvicorn leaves unwritten, and close the connection."""
        answer = b"".join(self.conn.data_to_send())
        if not answer:
            answer = self.conn.reject(
                HTTPStatus.BAD_REQUEST, "Failed to open a WebSocket connection: invalid request.\n"
            ).serialize()
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.transport.write(answer)
        self.transport.close()

    def send_receive_event_to_app(self) -> None:
        # uvicorn answers a text message that is not UTF-8 with 1007 and logs an error with a
        # traceback, for each one; DESIGN.md wants 4400 for any malformed first frame. Closed
        # as the app closes (the peer's reply ends it), since later frames of the same read
        # are still handled.
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                code, reason = CloseCode.MALFORMED, "text frame is not UTF-8"
                self.queue.put_nowait(
                    {"type": "websocket.disconnect", "code": code, "reason": reason}
                )
                self.conn.send_close(code, reason)
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.close_sent = True
                if self.read_paused:
                    self.read_paused = False
                    self.transport.resume_reading()
                self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
                return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        """The peer broke the protocol (a message over WS_MAX_MESSAGE_BYTES: 1009, a bad
        frame: 1002): websockets has queued its close frame and the end of our half of the
        connection. uvicorn writes the close frame and closes the socket at once, so data
        the peer is still sending (the rest of a fragmented message) arrives at a closed
        socket, whose reset can destroy the close frame before the peer reads it: one
        fragmented oversized message in five ended 1006 instead of 1009. Instead, as
        websockets means it: close our half (FIN after the close frame), read and discard
        until the peer closes its half, and close after CLOSE_LINGER_SECONDS at the latest.
        Called again for each later read (the parser's error stays set); then it only
        discards."""
        if self.close_sent and self.close_timer is None:
            super().handle_parser_exception()  # closed already, as uvicorn would
            return
        if not self.close_sent:
            close = self.conn.close_sent
            assert close is not None
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
            )
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(CLOSE_LINGER_SECONDS, self.transport.close)
        writes = self.conn.data_to_send()
        if data := b"".join(writes):
            self.transport.write(data)
        if b"" in writes:  # websockets' end-of-stream marker: half-close
            if self.transport.can_write_eof():
                self.transport.write_eof()
            else:
                self.transport.close()

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


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a head that is refused."""


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with every request head bounded in time and size.

    The clock starts at the accept (a connection that never sends a byte is closed silently,
    as uvicorn closes an idle kept-alive one) and, on a kept-alive connection, at the next
    request's first byte; it stops when the head is complete, which for a WebSocket is the
    moment the upgrade is handed to `EdgeWebSocketProtocol`. A head still incomplete after
    `head_timeout` seconds gets 408; one over MAX_HEAD_BYTES gets 414 (its target) or 431
    (its headers), whether it arrives whole or never ends; either way the connection is
    closed and the app never sees the request. Bodies, responses and upgrades stay uvicorn's.

    Served through `edge_http_protocol(timeout)`, which sets `head_timeout`.
    """

    head_timeout: float = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_open = True  # from the accept, or a head's first byte, to the head's end
        self._head_begun = False  # a byte of the current head has arrived
        self._head_parsed = 0  # bytes of the current head's target and headers, as parsed
        self._head_received = 0  # bytes received while the current head was open
        self._refusal: HTTPStatus | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._head_open and not self.transport.is_closing():
            # A head that does not end: httptools buffers the header it is in. Counted after
            # parsing, so that a head completed by this chunk (and a body after it) is not.
            self._head_received += len(data)
            if self._head_received > MAX_HEAD_BYTES:
                self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a parser error, which a callback's _HeadRefused is.
        if self._refusal is not None:
            self._refuse(self._refusal)
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open = self._head_begun = True
        self._head_parsed = self._head_received = 0
        if self._head_timer is None:
            self._start_head_clock()

    def on_url(self, url: bytes) -> None:
        self._count(len(url), HTTPStatus.REQUEST_URI_TOO_LONG)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = self._head_begun = False
        self._stop_head_clock()
        super().on_headers_complete()

    def _count(self, size: int, status: HTTPStatus) -> None:
        self._head_parsed += size
        if self._head_parsed > MAX_HEAD_BYTES:
            self._refusal = status
            raise _HeadRefused(status)

    def _start_head_clock(self) -> None:
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _stop_head_clock(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_begun:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT)
        else:
            self.transport.close()

    def _refuse(self, status: HTTPStatus) -> None:
        self._head_open = False
        self._stop_head_clock()
        self.logger.info("request head refused: %d %s", status.value, status.phrase)
        body = f"{status.phrase}.\n".encode()
        head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
        head += [
            name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
        ]
        head += [
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def edge_http_protocol(head_timeout: float) -> type[EdgeHttpProtocol]:
    """`EdgeHttpProtocol` with the given head timeout (uvicorn takes a class, not options)."""

    class ConfiguredEdgeHttpProtocol(EdgeHttpProtocol):
        pass

    ConfiguredEdgeHttpProtocol.head_timeout = head_timeout
    return ConfiguredEdgeHttpProtocol
