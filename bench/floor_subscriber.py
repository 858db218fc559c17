"""The floor: one raw Redis SUBSCRIBE connection for all of a process's users, with no server
and no WebSocket in between.

It is what delivery costs with nothing but Redis pub/sub, so the figures of every server
target can be read against it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import cast

import hiredis

from bench.client_stats import Stats


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
