"""One WebSocket connection as one user of a target, spoken by hand on an asyncio protocol:
the handshake, unmasked server frames, masked client frames, ping/pong, and what each target
sends over it (Insight's frames, Engine.IO v4 for Socket.IO, the peers' plain text).

By hand so that every target pays the same, small client cost and the client is not what
limits a run. Each received event is recorded in the process's `Stats`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from typing import Any, cast

from bench.client_stats import Stats
from bench.targets import Target


def _mask(payload: bytes) -> bytes:
    key = os.urandom(4)
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return key + masked.to_bytes(len(payload), "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + _mask(payload)


class WebSocketClient(asyncio.Protocol):
    """One WebSocket connection as one user of one target."""

    ACCEPTED = b"HTTP/1.1 101"  # how the answer to the handshake must begin
    REFUSED = "upgrade refused"  # what a ConnectionError says when it does not

    def __init__(self, target: Target, user: str, stats: Stats, path: str) -> None:
        self.target = target
        self.user = user
        self.stats = stats
        self.path = path
        self.buffer = b""
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.last_id: str | None = None  # Insight's cursor: the last event id seen
        loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.is_ready: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set_result(None)
        if not self.is_ready.done():
            why = f"close code {self.close_code}" if self.close_code else repr(exc)
            self.is_ready.set_exception(ConnectionError(f"{self.user}: closed before ready: {why}"))

    def past_head(self, data: bytes) -> bytes | None:
        """What is buffered and `data`, past the HTTP response's head once it has come whole;
        None while it has not (the bytes are kept). A head whose status is not `ACCEPTED`
        raises ConnectionError."""
        buffer = self.buffer + data if self.buffer else data
        if self.upgraded:
            return buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            self.buffer = buffer
            return None
        if not buffer.startswith(self.ACCEPTED):
            raise ConnectionError(f"{self.user}: {self.REFUSED}: {buffer[:80]!r}")
        self.upgraded = True
        return buffer[end + 4 :]

    def data_received(self, data: bytes) -> None:
        buffer = self.past_head(data)
        if buffer is None:
            return
        offset, size = 0, len(buffer)
        while size - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            length, start = second & 0x7F, offset + 2
            if length == 126:
                if size - offset < 4:
                    break
                length, start = struct.unpack_from("!H", buffer, offset + 2)[0], offset + 4
            elif length == 127:
                if size - offset < 10:
                    break
                length, start = struct.unpack_from("!Q", buffer, offset + 2)[0], offset + 10
            end = start + length
            if end > size:
                break
            self.frame(first & 0x0F, buffer[start:end])
            offset = end
        self.buffer = buffer[offset:]

    def frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 1:
            self.text(payload.decode())
        elif opcode == 9:
            self.send(10, payload)  # pong
        elif opcode == 8 and self.transport is not None:
            self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            self.transport.close()

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(opcode, payload))

    def ready(self) -> None:
        if not self.is_ready.done():
            self.is_ready.set_result(None)
            self.stats.mark_ready()

    def record(self, payload: dict[str, Any]) -> None:
        now = time.time_ns()
        self.stats.received.append((self.user, payload["n"], now - payload["t"], payload["to"]))

    def text(self, raw: str) -> None:
        kind = self.target.name
        if self.target.is_insight:
            frame = json.loads(raw)
            frame_type = frame.get("type")
            if frame_type == "ui_update":
                self.last_id = frame["id"]
                self.record(frame["data"])
            elif frame_type == "insight_ready":
                self.last_id = frame["id"]
                self.ready()
        elif kind == "socketio":
            if raw.startswith("42"):
                self.record(json.loads(raw[2:])[1])
            elif raw == "2":
                self.send(1, b"3")
            elif raw.startswith("40"):
                self.ready()
            elif raw.startswith("0"):
                self.send(1, b"40")
        elif raw == "ready":
            self.ready()
        else:
            self.record(json.loads(raw))
