"""Writing an event's encoded frame straight to a socket, when the server offers a way to.

Through ASGI, each event delivered to a socket costs a wakeup of that connection's writer
task, a message dict, Starlette's and the server's state checks, and a frame object built and
serialised by websockets for that one socket. Yet a server's text frame is not masked, so it
needs no per-receiver work beyond its payload: the fan-out frames each connection's payload
(its cursor spliced in front of the body the publisher encoded once) with `text_frame` and,
while the connection has nothing queued and its transport takes data, writes those bytes to
the socket itself (`FrameWriter.write_frame`). Anything else (a backlog, a
replay, a paused transport, a closing socket) goes through the connection's writer task, which
waits for the transport to drain (`wait_writable`) and then writes its backlog in one call.

A socket's writer also says when a message from the client arrives (`SocketWire`), so that
the session reads only while one waits, rather than keeping a reader task (and its chain of
awaiting coroutines) for the whole life of a socket that, like most, never sends again.

The edge's ASGI app finds the writer in the WebSocket's scope under `FRAME_WRITER_EXTENSION`,
put there by `insight edge`'s protocol (`edge.protocols.websocket`); served any other way
(plain `uvicorn edge.app:app`, another ASGI server), it is absent and frames go through
ASGI sends.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol

FRAME_WRITER_EXTENSION = "insight.frame_writer"
# A streaming HTTP response's writer (an SSE stream's), put in the scope of every GET request
# by `insight edge`'s HTTP protocol (`edge.protocols.stream`).
STREAM_WRITER_EXTENSION = "insight.stream_writer"

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

    def takes_data(self) -> bool:
        """Whether the transport takes data now (it is not paused by a full buffer)."""
        ...

    async def wait_writable(self) -> None:
        """Return once the transport takes data again (at once if it does now)."""
        ...


class SocketWire(FrameWriter, Protocol):
    """A WebSocket's writer, which also tells of the messages it queues for the app."""

    def notify_arrivals(self, callback: Callable[[], None] | None) -> None:
        """From now on, call `callback` each time a message (or the disconnect) is queued for
        the app's `receive`, and at once if one is queued already; None stops."""
        ...

    def has_arrivals(self) -> bool:
        """Whether a message waits to be received."""
        ...


class StreamWriter(FrameWriter, Protocol):
    def finish(self, last: bytes) -> None:
        """End the response with `last` and close the connection, without waiting for the
        peer (aborted a few seconds later if it has not taken it all)."""
        ...
