"""The load client: one process holding many WebSocket connections (or, for the floor, one
Redis subscriber), driven over a pipe by the benchmark.

It speaks the WebSocket protocol itself on asyncio protocols (handshake, unmasked server
frames, masked client frames, ping/pong) and Engine.IO v4 for Socket.IO, so every target pays
the same, small client cost and the client is not what limits a run. Each received event is
recorded as (addressee, sequence number, latency in ns, the addressee the payload names).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast

import hiredis

from bench.common import token
from bench.targets import SSE, Target

Record = tuple[str, int, int, str]
RETRY_CODES = {1012, 1013}  # the server asks the client to come back (restarting, overloaded)
RETRIES = 8


@dataclass
class Stats:
    """What every connection of this process feeds, and what the benchmark asks for."""

    received: list[Record] = field(default_factory=list)
    ready: int = 0
    retries: int = 0  # connections the server asked to come back later (1012, 1013)
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    wanted: int = 0

    def mark_ready(self) -> None:
        self.ready += 1
        if self.ready >= self.wanted:
            self.all_ready.set()


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

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"{self.user}: upgrade refused: {buffer[:80]!r}")
            self.upgraded = True
            buffer = buffer[end + 4 :]
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


class SseClient(WebSocketClient):
    """One Server-Sent Events stream as one user of the Insight edge: a GET with the token
    in its Authorization header, a chunked `text/event-stream` answer whose `data:` lines
    are the frames a socket would get, handed to the same `text`."""

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
        buffer = self.buffer + data if self.buffer else data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            if not buffer.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(f"{self.user}: stream refused: {buffer[:80]!r}")
            self.upgraded = True
            buffer = buffer[end + 4 :]
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


class FloorSubscriber(asyncio.Protocol):
    """The floor: raw SUBSCRIBE on one Redis connection, no WebSocket anywhere."""

    def __init__(self, users: list[str], stats: Stats) -> None:
        self.users = users
        self.stats = stats
        self.parser = hiredis.Reader()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        channels = [f"user:{u}".encode() for u in self.users]
        parts = [b"SUBSCRIBE", *channels]
        command = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        transport.write(command)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        while (reply := self.parser.gets()) is not False:
            if reply[0] == b"message":
                now = time.time_ns()
                payload = json.loads(reply[2])
                user = reply[1][5:].decode()
                self.stats.received.append((user, payload["n"], now - payload["t"], payload["to"]))
            elif reply[0] == b"subscribe":
                self.stats.mark_ready()


class LoadClient:
    """The connections of one process, and the commands the benchmark sends it."""

    def __init__(self, target: Target, redis_port: int) -> None:
        self.target = target
        self.redis_port = redis_port
        self.stats = Stats()
        self.clients: dict[str, WebSocketClient] = {}
        self.floor: asyncio.Transport | None = None
        self.tokens: dict[str, str] = {}  # minted once, outside any timed connect

    def socket(self, user: str, path: str) -> WebSocketClient:
        """The protocol of one connection (a subclass may watch more than latencies)."""
        if self.target.name == SSE:
            return SseClient(self.target, user, self.stats, path, self.tokens[user])
        return WebSocketClient(self.target, user, self.stats, path)

    def commands(self) -> dict[str, Callable[..., Any]]:
        """What the benchmark may ask of this process over its pipe."""
        return {
            "mint": self.mint,
            "connect": self.connect,
            "drop": self.drop,
            "take": self.take,
            "count": self.count,
            "retries": self.retries,
        }

    def mint(self, users: list[tuple[str, int]]) -> None:
        if self.target.is_insight:
            self.tokens.update((user, token(user)) for user, _ in users)

    async def connect(
        self, users: list[tuple[str, int]], *, since: bool = False, concurrency: int = 500
    ) -> float:
        """Open a connection per (user, server port), at most `concurrency` handshakes in
        flight; the seconds until every one is ready to receive (subscribed, replayed and
        announced)."""
        loop = asyncio.get_running_loop()
        self.stats.ready = 0
        self.stats.wanted = len(users)
        self.stats.all_ready = asyncio.Event()
        started = time.perf_counter()
        if self.target.name == "floor":
            self.floor, _ = await loop.create_connection(
                lambda: FloorSubscriber([u for u, _ in users], self.stats),
                "127.0.0.1",
                self.redis_port,
            )
        else:
            gate = asyncio.Semaphore(concurrency)

            async def open_one(user: str, port: int) -> None:
                cursor = self.clients[user].last_id if since and user in self.clients else None
                path = self.target.path(user, self.tokens.get(user), cursor)
                for attempt in range(RETRIES):
                    async with gate:
                        _, client = await loop.create_connection(
                            lambda: self.socket(user, path), "127.0.0.1", port
                        )
                        client.last_id = cursor
                        self.clients[user] = client
                        try:
                            await asyncio.wait_for(client.is_ready, 120)
                            return
                        except ConnectionError:
                            if client.close_code not in RETRY_CODES or attempt == RETRIES - 1:
                                raise
                    # As insight.js does: back off with full jitter, then resume with `since`.
                    self.stats.retries += 1
                    await asyncio.sleep(random.uniform(0, min(5.0, 0.25 * 2**attempt)))

            await asyncio.gather(*(open_one(u, port) for u, port in users))
        await asyncio.wait_for(self.stats.all_ready.wait(), 300)
        return time.perf_counter() - started

    async def drop(self) -> None:
        """Every connection dies at once, as when a load balancer or a network blips: no
        close handshake, just the TCP connection gone."""
        for client in self.clients.values():
            if client.transport is not None:
                client.transport.abort()
        await asyncio.gather(*(c.closed for c in self.clients.values()))

    def take(self) -> list[Record]:
        received, self.stats.received = self.stats.received, []
        return received

    def count(self) -> int:
        return len(self.stats.received)

    def retries(self) -> int:
        return self.stats.retries


async def serve(pipe: Connection, client: LoadClient) -> None:
    """Answer the benchmark's commands until it says stop."""
    commands = client.commands()
    while True:
        name, kwargs = await asyncio.to_thread(pipe.recv)
        if name == "stop":
            pipe.send(None)
            return
        try:
            result = commands[name](**kwargs)
            if asyncio.iscoroutine(result):
                result = await result
            pipe.send(("ok", result))
        except Exception as error:
            pipe.send(("error", repr(error)))


def run(pipe: Connection, target: Target, redis_port: int) -> None:
    """The load client process's entry point."""
    import uvloop

    uvloop.run(serve(pipe, LoadClient(target, redis_port)))
