"""The load client: one process holding many connections (WebSocket, SSE, or for the floor
one Redis subscriber), driven over a pipe by the benchmark.

A process of its own, so that the users' connections do not share an interpreter with the
rig or the producers; the rig starts one or more and sends each the same commands (`serve`).
The connections themselves are in `bench.websocket_client`, `bench.sse_client` and
`bench.floor_subscriber`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from bench.client_stats import Record, Stats
from bench.common import token
from bench.floor_subscriber import FloorSubscriber
from bench.sse_client import SseClient
from bench.targets import SSE, Target
from bench.websocket_client import WebSocketClient

RETRY_CODES = {1012, 1013}  # the server asks the client to come back (restarting, overloaded)
RETRIES = 8


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
        if not users:  # a share of none (fewer users than client processes)
            return 0.0
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
