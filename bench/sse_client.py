"""One Server-Sent Events stream as one user of the Insight edge, for comparing SSE with
WebSockets on the same edge (scenario 13).

It is a `WebSocketClient` in all but the wire: the same handshake reading (with 200 for 101),
then chunked `text/event-stream` whose `data:` lines carry the frames a socket would, so both
record events alike and the comparison measures the transport alone.
"""

from __future__ import annotations

import asyncio
from typing import cast

from bench.client_stats import Stats
from bench.targets import Target
from bench.websocket_client import WebSocketClient


class SseClient(WebSocketClient):
    """One Server-Sent Events stream as one user of the Insight edge: a GET with the token
    in its Authorization header, a chunked `text/event-stream` answer whose `data:` lines
    are the frames a socket would get, handed to the same `text`."""

    ACCEPTED = b"HTTP/1.1 200"
    REFUSED = "stream refused"

    def __init__(self, target: Target, user: str, stats: Stats, path: str, jwt: str) -> None:
        super().__init__(target, user, stats, path)
        self.jwt = jwt
        self.events = b""  # the stream's bytes without their chunk framing, not yet parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.jwt}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.past_head(data)
        if buffer is None:
            return
        while True:  # chunks: `<size in hex>\r\n<data>\r\n`
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                break
            size = int(buffer[:line_end], 16)
            if len(buffer) < line_end + 2 + size + 2:
                break
            self.events += buffer[line_end + 2 : line_end + 2 + size]
            buffer = buffer[line_end + 4 + size :]
        self.buffer = buffer
        *messages, self.events = self.events.split(b"\n\n")
        for message in messages:
            for line in message.split(b"\n"):
                if line.startswith(b"data: "):
                    self.text(line[6:].decode())
