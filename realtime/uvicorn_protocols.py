"""Every use of uvicorn's internals: the two protocol classes `insight edge` serves with, and
the declaration of what they rely on in uvicorn's own classes (`check_uvicorn`).

uvicorn offers no public way to change how a socket is read or written, so these subclass its
protocols and read and replace their attributes. Nothing else in Insight imports this module
but `realtime.serving` (which hands the classes to `uvicorn.run`, uvicorn's public interface)
and the tests; the rest of the edge knows only the `FrameWriter` in the WebSocket's scope
(`realtime.frame_writer`), and works without it, as under plain `uvicorn realtime.main:app`.

`EdgeWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol (`websockets-sansio`) that
also offers itself as the socket's `FrameWriter`. It holds less per socket than uvicorn's:
an edge keeps tens of thousands open for hours, so the ASGI receive queue and the writable
event become `realtime.wakeups`' Inbox and Flag, and the handshake's request and response
are dropped once the socket is open (what that saves: bench/results/design-figures.md).

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

Nothing held (DESIGN.md): a peer that stops reading, its TCP window shut, would hold its
socket for ever, because every close (uvicorn's and the app's) waits for the transport's
write buffer to drain, and the app's close first waits for the transport to take data at all.
`EdgeWebSocketProtocol` queues the app's close frame at once, and aborts the connection
CLOSE_GRACE_SECONDS after any close it starts if the peer has not taken it by then.

A text message that is not UTF-8 is closed 4400 (malformed), like any other malformed first
frame, instead of uvicorn's 1007 with an error and its traceback logged for every one. And a
connection failed for a protocol error (1009 for a message over WS_MAX_MESSAGE_BYTES) is
half-closed and drained rather than closed at once, so that the peer reads its close code
(see `EdgeWebSocketProtocol.handle_parser_exception`).

An upgrade of uvicorn may rename or drop what these classes rely on, and a subclass would
then fail quietly (an override no longer called, an attribute set that nobody reads).
`UVICORN_RELIANCE` names all of it; `check_uvicorn` (run by `serve` at start-up, and by
tests/test_uvicorn_contract.py) says exactly what changed, and the range that was tested.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import textwrap
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request
from websockets.protocol import State

from realtime.close_codes import CloseCode
from realtime.frame_writer import FRAME_WRITER_EXTENSION
from realtime.wakeups import Flag, Inbox

if TYPE_CHECKING:
    from uvicorn._types import ASGISendEvent

# The versions these classes were tested against, as pyproject.toml requires them (a test
# keeps the two equal); tests/test_uvicorn_contract.py says how to test another.
UVICORN_REQUIREMENT = "uvicorn[standard]>=0.52.1,<0.55"
WEBSOCKETS_REQUIREMENT = "websockets>=17.0,<18"

# The most a request head (request line and headers) may take, all lines together. Each line
# of a WebSocket handshake is also held to websockets' MAX_LINE_LENGTH (8 KiB); browsers send
# heads of 1 to 4 KiB, cookies included.
MAX_HEAD_BYTES = 64 * 1024
# After failing a connection (a protocol error), how long to wait for the peer to close its
# half of the TCP connection before closing ours anyway.
CLOSE_LINGER_SECONDS = 2.0
# After any close the edge starts, how long the peer has to take the close frame (and what
# was queued before it) and answer, before the connection is aborted: DESIGN.md's "a few
# seconds" after a decision to close (see `_bound_close`).
CLOSE_GRACE_SECONDS = 3.0

logger = logging.getLogger(__name__)


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's `websockets-sansio` protocol that also offers itself as the socket's
    `FrameWriter`. It only adds a way to write data frames and trims what it holds: the
    handshake, pings, closing and flow control stay uvicorn's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]
        self.writable.set()
        self.close_timeout = CLOSE_GRACE_SECONDS  # for the peer's reply to our close frame
        self._abort_timer: asyncio.TimerHandle | None = None

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
                self._start_close(CloseCode.MALFORMED, "text frame is not UTF-8")
                return
        super().send_receive_event_to_app()

    def _start_close(self, code: int, reason: str) -> None:
        """What uvicorn does for the app's `websocket.close`, without first waiting for the
        transport to take data: tell the app, queue the close frame, read the peer's reply
        (its close frame), close when it comes or after `close_timeout`, and abort the
        connection if even that cannot be done in time (`_bound_close`)."""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
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
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        super().connection_lost(exc)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()  # sends 1011 and closes the transport
        self._bound_close()

    def shutdown(self) -> None:
        super().shutdown()  # sends 1012 (or answers a pending handshake) and closes
        self._bound_close()

    async def run_asgi(self) -> None:
        await super().run_asgi()  # closes the transport unless a close is under way
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
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
            )
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(CLOSE_LINGER_SECONDS, self.transport.close)
            self._bound_close()
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
        # is a local of the parsing generator); the scope has its own copy of the headers.
        event.headers.clear()

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

    def takes_data(self) -> bool:
        return self.writable.is_set()

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


# -- what the classes above rely on in uvicorn's ------------------------------------------


@dataclass(frozen=True)
class Reliance:
    """What this module relies on in one of uvicorn's classes, beyond its public interface."""

    owner: type
    # Set by the class (`self.<name> = ...`, in __init__ or a handler), read or replaced here.
    attributes: tuple[str, ...] = ()
    # Overridden or called here: each one's parameter names, `self` first.
    methods: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A method of the class -> the methods (overridden here) it must go on calling.
    calls: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # An attribute replaced here -> every method the class may call on it (what the
    # replacement implements).
    uses: dict[str, frozenset[str]] = field(default_factory=dict)


UVICORN_RELIANCE = (
    Reliance(
        WebSocketsSansIOProtocol,
        attributes=(
            "queue", "writable", "conn", "loop", "transport", "scope", "request", "response",
            "handshake_initiated", "handshake_complete", "close_sent", "close_timer",
            "close_timeout", "disconnected", "read_paused", "frames", "curr_msg_data_type",
        ),
        methods={
            "__init__": ("self", "config", "server_state", "app_state", "_loop"),
            "connection_lost": ("self", "exc"),
            "data_received": ("self", "data"),
            "send_receive_event_to_app": ("self",),
            "handle_parser_exception": ("self",),
            "handle_connect": ("self", "event"),
            "keepalive_timeout": ("self",),
            "shutdown": ("self",),
            "run_asgi": ("self",),
            "send": ("self", "message"),
        },
        calls={
            "data_received": ("handle_parser_exception", "handle_events"),
            "handle_events": ("handle_connect",),
            "handle_text": ("send_receive_event_to_app",),
            "handle_cont": ("send_receive_event_to_app",),
        },
        uses={
            "queue": frozenset({"put_nowait", "get", "empty"}),
            "writable": frozenset({"is_set", "set", "clear", "wait"}),
        },
    ),
    Reliance(
        HttpToolsProtocol,
        attributes=("server_state", "loop", "logger", "transport"),
        methods={
            "__init__": ("self", "config", "server_state", "app_state", "_loop"),
            "connection_made": ("self", "transport"),
            "connection_lost": ("self", "exc"),
            "data_received": ("self", "data"),
            "send_400_response": ("self", "msg"),
            "on_message_begin": ("self",),
            "on_url": ("self", "url"),
            "on_header": ("self", "name", "value"),
            "on_headers_complete": ("self",),
        },
        calls={"data_received": ("send_400_response",)},
    ),
    Reliance(ServerState, attributes=("default_headers",)),
)  # fmt: skip


class UvicornContractError(RuntimeError):
    """The installed uvicorn lacks or changed something `UVICORN_RELIANCE` names."""


def check_uvicorn(reliances: tuple[Reliance, ...] = UVICORN_RELIANCE) -> None:
    """Fail at start-up, naming each change, rather than serve with an override that uvicorn
    no longer calls or an attribute it no longer reads."""
    if breaks := [change for reliance in reliances for change in _changes(reliance)]:
        raise UvicornContractError(
            f"uvicorn {uvicorn.__version__} is not the uvicorn realtime/uvicorn_protocols.py "
            f"was written for (tested: {UVICORN_REQUIREMENT}, {WEBSOCKETS_REQUIREMENT}): "
            + "; ".join(breaks)
        )


def _changes(reliance: Reliance) -> list[str]:
    """What `reliance` names that its owner no longer has, read from the owner's own code
    (its syntax tree: a comment or a string that mentions a name does not count, nor does a
    method only inherited from asyncio's base classes)."""
    owner = reliance.owner.__name__
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(reliance.owner)))
    except (OSError, TypeError, SyntaxError):
        return [f"the source of {owner} cannot be read, so it cannot be checked"]
    methods = {
        node.name: node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assigned = {name for node in ast.walk(tree) for name in _assigned_on_self(node)}
    changes = [
        f"{owner} does not set self.{name}" for name in reliance.attributes if name not in assigned
    ]
    for name, expected in reliance.methods.items():
        if name not in vars(reliance.owner):
            changes.append(f"{owner}.{name} is missing")
        elif (found := tuple(inspect.signature(vars(reliance.owner)[name]).parameters)) != expected:
            changes.append(
                f"{owner}.{name} takes ({', '.join(found)}), not ({', '.join(expected)})"
            )
    for name, callees in reliance.calls.items():
        if name not in methods:
            changes.append(f"{owner}.{name} is missing")
            continue
        made = {attribute for attribute, _ in _calls_on_self(methods[name])}
        changes += [
            f"{owner}.{name} does not call self.{callee}()"
            for callee in callees
            if callee not in made
        ]
    for name, allowed in reliance.uses.items():
        called = {
            method
            for attribute, method in _calls_on_self(tree)
            if attribute == name and method is not None
        }
        changes += [
            f"{owner} calls self.{name}.{extra}(), which its replacement here lacks"
            for extra in sorted(called - allowed)
        ]
    return changes


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _assigned_on_self(node: ast.AST) -> list[str]:
    """The names of `self.<name> = ...` (plain, annotated, augmented or unpacked) at `node`."""
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    else:
        return []
    names = []
    while targets:
        target = targets.pop()
        if isinstance(target, ast.Tuple | ast.List):
            targets.extend(target.elts)
        elif isinstance(target, ast.Attribute) and _is_self(target.value):
            names.append(target.attr)
    return names


def _calls_on_self(tree: ast.AST) -> list[tuple[str, str | None]]:
    """Every call `self.<a>(...)`, as (a, None), and `self.<a>.<m>(...)`, as (a, m)."""
    calls: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        called = node.func
        if _is_self(called.value):
            calls.append((called.attr, None))
        elif isinstance(called.value, ast.Attribute) and _is_self(called.value.value):
            calls.append((called.value.attr, called.attr))
    return calls
