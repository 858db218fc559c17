"""`EdgeWebSocketProtocol`: uvicorn's sans-I/O WebSocket protocol (`websockets-sansio`) that
also offers itself as the socket's `SocketWire` (`edge.frame_writer`).

It holds less per socket than uvicorn's: an edge keeps tens of thousands open for hours, so
the ASGI receive queue and the writable event become `edge.wakeups`' Inbox and Flag, the
handshake's request, response and headers are dropped once the socket is open (what that
saves: bench/results/design-figures.md), and the keepalive ping waits on the process's timer
wheel (`edge.second_wheel`) instead of a loop timer per socket.

What it changes in uvicorn's behaviour, each said where it is done:
- a handshake websockets refuses (a line over 8 KiB, too many headers) is answered and closed,
  where uvicorn 0.54 left it unwritten and the connection open (`_refuse_handshake`);
- nothing held: every close the edge starts is queued at once and bounded, even for a peer
  whose TCP window is shut (`_start_close`, `_bound_close`);
- a shutdown spreads its 1012s over WS_SHUTDOWN_DRAIN_SECONDS, as Phoenix's socket drainer
  does, so clients reach the other edges as a stream, not a herd (`shutdown`);
- a text message that is not UTF-8 closes 4400, like any malformed frame, not uvicorn's 1007
  with a traceback (`send_receive_event_to_app`); a protocol error (1009) half-closes and
  drains so that the peer reads its code (`handle_parser_exception`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

from edge.close_codes import CloseCode
from edge.frame_writer import FRAME_WRITER_EXTENSION
from edge.protocols.contract import WEBSOCKET_PROTOCOL_ATTRIBUTES
from edge.second_wheel import OnTheWheel
from edge.wakeups import Flag, Inbox

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

# After failing a connection (a protocol error), how long to wait for the peer to close its
# half of the TCP connection before closing ours anyway.
CLOSE_LINGER_SECONDS = 2.0
# After any close the edge starts, how long the peer has to take the close frame (and what
# was queued before it) and answer, before the connection is aborted: docs/protocol.md's "a few
# seconds" after a decision to close (see `_bound_close`).
CLOSE_GRACE_SECONDS = 3.0

logger = logging.getLogger(__name__)


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol that also offers itself as the socket's
    `SocketWire`. It only adds a way to write data frames and to hear of messages, and trims
    what it holds: the handshake, pings, closing and flow control stay uvicorn's."""

    # uvicorn's attributes (and ours) in slots, not the 1.9 KB dict its 37 attributes need
    # (bench/results/design-figures.md); one a later uvicorn adds lands in a dict, as before,
    # and tests/test_uvicorn_contract.py keeps this list whole.
    __slots__ = (*WEBSOCKET_PROTOCOL_ATTRIBUTES, "_abort_timer", "_drain_timer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self.close_timeout = CLOSE_GRACE_SECONDS  # for the peer's reply to our close frame
        self._abort_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None

    drain_seconds = 0.0  # set by `edge_websocket_protocol`

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
        # traceback, for each one; docs/protocol.md says 4400 for any malformed first frame. Closed
        # as the app closes (the peer's reply ends it), since later frames of the same read
        # are still handled.
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                self._start_close(CloseCode.MALFORMED, "text frame is not UTF-8")
                return
        super().send_receive_event_to_app()

    def _start_close(self, code: int, reason: str) -> None:
        """What uvicorn does for the app's `websocket.close`, without first waiting for the
        transport to take data (`_closing` after `close_timeout`)."""
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self._closing(code, reason, self.close_timeout)

    def _closing(self, code: int, reason: str, wait: float) -> None:
        """Our close frame is queued: tell the app, read on for the peer's reply (its close
        frame, or its half of the TCP connection), close after `wait` at the latest, and
        abort if even that cannot be done in time (`_bound_close`)."""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(wait, self.transport.close)
        self._bound_close()

    def _bound_close(self) -> None:
        """Abort the connection if it is still open CLOSE_GRACE_SECONDS from now.

        Every close of a socket goes through `transport.close()`, which closes only once the
        transport's write buffer has drained: never, while a peer that stopped reading keeps
        its TCP window shut. So each close the edge starts (the app's close: a full buffer's
        1013, an expired or revoked token; a ping left unanswered; a shutdown; a protocol
        error) is bounded here, and the socket, its descriptor and its buffers go at the
        latest this long after it."""
        if self._abort_timer is None and not self.disconnected:
            self._abort_timer = self.loop.call_later(CLOSE_GRACE_SECONDS, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if self.disconnected:
            return
        logger.info(
            "websocket aborted: the peer took nothing for %.0f s after the close",
            CLOSE_GRACE_SECONDS,
            extra={"unsent_bytes": self.transport.get_write_buffer_size()},
        )
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._abort_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._abort_timer = self._drain_timer = None
        super().connection_lost(exc)

    def schedule_ping(self) -> None:
        """The next keepalive ping, as uvicorn schedules it, on the process's timer wheel
        (`edge.second_wheel`) rather than on a loop timer of its own per socket."""
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)
        self.ping_timer = _KeepalivePing(self, delay)  # type: ignore[assignment]

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends 1011 and closes the transport
        self._bound_close()

    def shutdown(self) -> None:
        """An open socket closes at a random moment within `drain_seconds`; a handshake
        still under way is answered at once."""
        if self.drain_seconds and self.handshake_complete and not self.close_sent:
            delay = random.uniform(0, self.drain_seconds)  # a spread, not a secret
            self._drain_timer = self.loop.call_later(delay, self._shut_down)
        else:
            self._shut_down()

    def _shut_down(self) -> None:
        self._drain_timer = None
        if self.disconnected or self.transport.is_closing():
            return
        super().shutdown()  # sends 1012 (or answers a pending handshake) and closes
        self._bound_close()

    def on_task_complete(self, task: asyncio.Task[None]) -> None:
        # The ASGI task has ended, and closed the transport unless a close is under way. A
        # done callback rather than an override of `run_asgi`: a coroutine wrapped around
        # the app's would wait in memory for the socket's whole life.
        super().on_task_complete(task)
        self._bound_close()

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
            self._closing(close.code, close.reason, CLOSE_LINGER_SECONDS)
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
            extensions[FRAME_WRITER_EXTENSION] = self
        # websockets' parser keeps the request alive for as long as the socket is open (it
        # is a local of the parsing generator); the scope has its own copy of the headers,
        # and of the path and query (which may carry the token).
        event.headers.clear()
        event.path = ""

    async def send(self, message: ASGISendEvent) -> None:
        if (
            message["type"] == "websocket.close"
            and self.handshake_complete
            and not (self.close_sent or self.disconnected or self.transport.is_closing())
        ):
            # uvicorn would first wait for the transport to take data, which a peer that
            # stopped reading never lets it do: the close and the socket would be held.
            self._start_close(message.get("code", 1000), message.get("reason") or "")
            return
        await super().send(message)
        if message["type"] == "websocket.accept":
            # The handshake is done: its request and response are never read again, nor are
            # the request's headers (the endpoint reads the origin before it accepts), which
            # the scope would otherwise keep for the socket's life (18 objects, 0.9 KB), nor
            # is the query (read before accepting too), whose token need not stay in memory.
            del self.request, self.response
            headers = self.scope["headers"]
            if isinstance(headers, list):  # uvicorn's is; cleared in place for every holder
                headers.clear()
            self.scope["query_string"] = b""

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

    def takes_data(self) -> bool:
        return self.writable.is_set()

    def notify_arrivals(self, callback: Callable[[], None] | None) -> None:
        cast(Inbox, self.queue).notify = callback
        if callback is not None and not self.queue.empty():
            callback()

    def has_arrivals(self) -> bool:
        return not self.queue.empty()

    async def wait_writable(self) -> None:
        await self.writable.wait()


class _KeepalivePing(OnTheWheel):
    """The socket's next keepalive ping, on the wheel."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: EdgeWebSocketProtocol, delay: float) -> None:
        super().__init__()
        self._protocol = protocol
        self.start(delay)

    def expired(self) -> None:
        self._protocol.send_keepalive_ping()


def edge_websocket_protocol(drain_seconds: float) -> type[EdgeWebSocketProtocol]:
    """`EdgeWebSocketProtocol` with the given shutdown drain (uvicorn takes a class)."""

    class ConfiguredEdgeWebSocketProtocol(EdgeWebSocketProtocol):
        pass

    ConfiguredEdgeWebSocketProtocol.drain_seconds = drain_seconds
    return ConfiguredEdgeWebSocketProtocol
