"""`EdgeHttpProtocol`: uvicorn's httptools protocol with every request head bounded in time
and size.

uvicorn's own, as of 0.54, bounds a request head neither in time nor in size: a client that
sends it a byte at a time (slowloris), or sends nothing, holds the socket, and a 1 MB header
is buffered and answered. This one gives every head WS_HANDSHAKE_TIMEOUT_SECONDS from its
first byte (from the accept, for a new connection) and `MAX_HEAD_BYTES`, then answers 408,
414 or 431 and closes. And every GET request gets a `StreamWire` in its scope: the writer of
an SSE stream (`edge.protocols.stream`).
"""

from __future__ import annotations

import asyncio
import random
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from edge.close_codes import CloseCode
from edge.frame_writer import STREAM_WRITER_EXTENSION
from edge.protocols.stream import StreamWire
from realtime import sse

# The most a request head (request line and headers) may take, all lines together. Each line
# of a WebSocket handshake is also held to websockets' MAX_LINE_LENGTH (8 KiB); browsers send
# heads of 1 to 4 KiB, cookies included.
MAX_HEAD_BYTES = 64 * 1024


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

    Served through `edge_http_protocol(timeout, drain)`, which sets `head_timeout` and
    `drain_seconds`.
    """

    head_timeout: float = 5.0
    drain_seconds: float = 0.0  # WS_SHUTDOWN_DRAIN_SECONDS: see `shutdown`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_open = True  # from the accept, or a head's first byte, to the head's end
        self._head_begun = False  # a byte of the current head has arrived
        self._head_parsed = 0  # bytes of the current head's target and headers, as parsed
        self._head_received = 0  # bytes received while the current head was open
        self._refusal: HTTPStatus | None = None
        self._stream: StreamWire | None = None  # the current GET's, which may be an SSE stream

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
        cycle = self.cycle
        if self.scope["method"] == "GET" and cycle is not None and cycle.scope is self.scope:
            # The ASGI task is created but has not run yet, so it sees the extension.
            extensions: dict[str, object] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
            self._stream = StreamWire(cycle, self.flow, self.transport, self.loop)
            extensions[STREAM_WRITER_EXTENSION] = self._stream

    def shutdown(self) -> None:
        """As uvicorn shuts a connection down, but a stream under way (an SSE stream never
        ends by itself, so uvicorn would wait for it until its graceful timeout and then cut
        it) ends with 1012 at a random moment within `drain_seconds`, as a socket does
        (`edge.protocols.websocket`): its client resumes on another edge."""
        super().shutdown()
        stream = self._stream
        if stream is not None and stream.streaming:
            delay = random.uniform(0, self.drain_seconds)  # a spread, not a secret
            ending = sse.closing(CloseCode.SERVER_RESTARTING, "server restarting")
            self.loop.call_later(delay, stream.finish, ending)

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


def edge_http_protocol(head_timeout: float, drain_seconds: float) -> type[EdgeHttpProtocol]:
    """`EdgeHttpProtocol` with the given head timeout and shutdown drain (uvicorn takes a
    class, not options)."""

    class ConfiguredEdgeHttpProtocol(EdgeHttpProtocol):
        pass

    ConfiguredEdgeHttpProtocol.head_timeout = head_timeout
    ConfiguredEdgeHttpProtocol.drain_seconds = drain_seconds
    return ConfiguredEdgeHttpProtocol
