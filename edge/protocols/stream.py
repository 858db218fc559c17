"""`StreamWire`: a streaming HTTP response's `FrameWriter` (`edge.frame_writer`), so that an
SSE stream is written as a WebSocket is: the fan-out writes each event's message straight to
the transport while it takes data, and a backlog waits in the connection's bounded buffer.

Through ASGI alone a stream would hold what the socket holds not: each `http.response.body`
waits for the transport to drain, so a reader that stops reading (its TCP window shut) would
hold its task, its buffers and its slot of the per-user cap for ever, and even the end of the
response would wait. Here nothing waits on the peer: `write_frame` refuses while the transport
is paused, and `finish` writes the last message and closes, aborting the connection
CLOSE_GRACE_SECONDS later if the peer has not taken it (as `EdgeWebSocketProtocol` bounds a
WebSocket's close).

The response's head still goes through ASGI (`http.response.start`), which decides its
framing: chunked for HTTP/1.1, the raw bytes up to the close for HTTP/1.0.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from edge.protocols.websocket import CLOSE_GRACE_SECONDS

_LAST_CHUNK = b"0\r\n\r\n"


class StreamWire:
    """The `StreamWriter` (`edge.frame_writer`) of one streaming response."""

    __slots__ = ("_cycle", "_flow", "_loop", "_transport")

    def __init__(
        self,
        cycle: RequestResponseCycle,
        flow: FlowControl,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._cycle = cycle
        self._flow = flow
        self._transport = transport
        self._loop = loop

    def _open(self) -> bool:
        cycle = self._cycle
        return (
            cycle.response_started
            and not cycle.response_complete
            and not cycle.disconnected
            and not self._transport.is_closing()
        )

    @property
    def streaming(self) -> bool:
        """Whether the response is under way: started, and neither ended nor cut."""
        return self._open()

    def write_frame(self, frame: bytes) -> bool:
        if self._flow.write_paused or not self._open():
            return False
        self._transport.write(self._framed(frame))
        return True

    def takes_data(self) -> bool:
        return not self._flow.write_paused

    async def wait_writable(self) -> None:
        await self._flow.drain()  # set again by the protocol when the peer goes away

    def finish(self, last: bytes) -> None:
        """End the response with `last` without waiting for the peer, and close the
        connection; abort it if the peer has not taken it all CLOSE_GRACE_SECONDS later."""
        if self._open():
            ending = self._framed(last) + _LAST_CHUNK if self._cycle.chunked_encoding else last
            self._transport.write(ending)
        cycle = self._cycle
        cycle.response_complete = True  # uvicorn sends nothing more, and reads on no further
        cycle.keep_alive = False
        cycle.message_event.set()
        self._transport.close()  # once the write buffer drains, which a stalled peer prevents
        self._loop.call_later(CLOSE_GRACE_SECONDS, self._transport.abort)  # a no-op once closed

    def _framed(self, data: bytes) -> bytes:
        if self._cycle.chunked_encoding:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data
