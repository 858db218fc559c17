"""The load client under churn: the same WebSocket clients as `bench.loadclient`, each of
which also loses its socket and comes back with `since`, as a browser on a flaky network or
behind a load balancer during a deploy does.

Two kinds of loss, both handled by one loop per user (`ChurnClient.churn`):
- killed: every ~`kill_every` seconds (uniform over half to one and a half times it) the
  client aborts its own TCP connection, with no close frame, as a network drop does, and
  reconnects after ~`offline` seconds;
- closed by the server (1012 on a deploy, 1013, or a reset): the client reconnects as
  insight.js does (1012 at once, within 250 ms; otherwise with full-jitter backoff).

A reconnect goes to a random edge, as a load balancer sends it; a connection refused (an edge
restarting, no longer listening) is tried on the next edge at once, as a balancer retries
another upstream without the browser seeing it. Every reconnect sends `since` = the last id
the user saw, on whichever socket.

What it keeps, per user across all its sockets: whether events arrived in their log's order
(`Watch`), `insight_gap` frames, and for each reconnect the wall-clock moments that the
scenarios turn into outage, resume and replay times (`Reconnect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from functools import partial
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

from bench.client_stats import Stats
from bench.loadclient import LoadClient, serve
from bench.targets import Target
from bench.websocket_client import WebSocketClient
from realtime.frames import Key, event_id_of, parse_event_id

KILLED = 0  # the cause of a socket the client aborted itself
RESET = 1006  # closed without a close frame from the server
SERVER_RESTARTING, TRY_AGAIN_LATER = 1012, 1013
MIN_DELAY, MAX_DELAY = 0.25, 30.0  # insight.js's minDelayMs and maxDelayMs, in seconds
READY_TIMEOUT = 60.0
GAP_PREFIX = '{"type":"insight_gap"'


class Reconnect(NamedTuple):
    """One lost socket and its replacement; times are wall-clock ns."""

    user: str
    cause: int  # KILLED, or the close code the server sent (RESET: none)
    from_port: int  # the edge of the socket lost
    to_port: int  # the edge of the socket that replaced it
    lost_at: int
    reconnect_at: int  # the first attempt began (after the pause)
    attempt_at: int  # the attempt that succeeded began
    upgraded_at: int  # its handshake was answered (101)
    ready_at: int  # `insight_ready` on the new socket: everything missed has arrived
    first_missed_ns: int  # reconnect_at to the first event published before it (-1: none)
    attempts: int  # WebSocket handshakes, the one that succeeded included
    refused: int  # TCP connects refused on the way (an edge not listening)


class Watch:
    """Per user, across every socket it opens: log order and gaps. Duplicates are counted
    by `bench.window.summarise` from the records; here a repeat is only left out of the order."""

    def __init__(self) -> None:
        self.seen: dict[str, set[int]] = {}
        self.last: dict[str, Key] = {}
        self.out_of_order = 0
        self.gaps = 0

    def arrived(self, user: str, n: int, frame_id: str) -> None:
        seen = self.seen.setdefault(user, set())
        if n in seen:
            return
        seen.add(n)
        position = parse_event_id(event_id_of(frame_id))
        if position is None:
            raise ValueError(f"{user}: a frame id that names no event: {frame_id!r}")
        last = self.last.get(user)
        if last is not None and position.key < last:
            self.out_of_order += 1  # older than an event this user already got
        else:
            self.last[user] = position.key


class ChurnSocket(WebSocketClient):
    """A `WebSocketClient` that reports to the `Watch` and times its own resume."""

    def __init__(
        self,
        target: Target,
        user: str,
        stats: Stats,
        path: str,
        watch: Watch,
        reconnect_at: int | None,
    ) -> None:
        super().__init__(target, user, stats, path)
        self.watch = watch
        self.reconnect_at = reconnect_at  # when this reconnect began (None: a first connect)
        self.first_missed_ns = -1
        self.upgraded_at = 0
        self.ready_at = 0

    def data_received(self, data: bytes) -> None:
        upgraded = self.upgraded
        super().data_received(data)
        if self.upgraded and not upgraded:
            self.upgraded_at = time.time_ns()

    def text(self, raw: str) -> None:
        if raw.startswith(GAP_PREFIX):
            self.watch.gaps += 1
            return
        super().text(raw)

    def record(self, payload: dict[str, Any]) -> None:
        super().record(payload)
        assert self.last_id is not None  # set from the frame just before `record`
        self.watch.arrived(self.user, payload["n"], self.last_id)
        if self.reconnect_at is not None:
            # Only the first event after a reconnect tells: in order, the first missed one.
            if payload["t"] < self.reconnect_at:
                self.first_missed_ns = time.time_ns() - self.reconnect_at
            self.reconnect_at = None

    def ready(self) -> None:
        if not self.is_ready.done():
            self.ready_at = time.time_ns()
        super().ready()


def _pause(cause: int, attempt: int, rng: random.Random) -> float:
    """How long insight.js waits before attempt `attempt` (0: the first) after `cause`."""
    if cause == SERVER_RESTARTING and attempt == 0:
        return rng.uniform(0, MIN_DELAY)  # another instance takes us now
    if cause == TRY_AGAIN_LATER:
        attempt = max(attempt, 3)
    return rng.uniform(0, min(MAX_DELAY, MIN_DELAY * 2**attempt))


class ChurnClient(LoadClient):
    """The connections of one process, with the `churn` command on top of the load client's."""

    def __init__(self, target: Target, redis_port: int) -> None:
        super().__init__(target, redis_port)
        self.watch = Watch()
        self._reconnects: list[tuple[Reconnect, ChurnSocket]] = []  # first_missed: later

    def socket(self, user: str, path: str) -> WebSocketClient:
        return ChurnSocket(self.target, user, self.stats, path, self.watch, None)

    def commands(self) -> dict[str, Any]:
        return {**super().commands(), "churn": self.churn}

    async def churn(
        self, ports: list[int], seconds: float, kill_every: float, offline: float, seed: int
    ) -> dict[str, Any]:
        """For `seconds`, keep every connected user connected through kills (none when
        `kill_every` is 0) and server closes; returns once each is connected and ready
        again. What happened: every reconnect, events out of order, gaps."""
        deadline = time.monotonic() + seconds
        seeds = random.Random(seed)
        await asyncio.gather(
            *(
                self._keep(
                    user, ports, deadline, kill_every, offline, random.Random(seeds.random())
                )
                for user in list(self.clients)
            )
        )
        reconnects = [r._replace(first_missed_ns=s.first_missed_ns) for r, s in self._reconnects]
        self._reconnects = []
        return {
            "reconnects": reconnects,
            "out_of_order": self.watch.out_of_order,
            "gaps": self.watch.gaps,
            "connected": sum(not c.closed.done() for c in self.clients.values()),
        }

    async def _keep(
        self,
        user: str,
        ports: list[int],
        deadline: float,
        kill_every: float,
        offline: float,
        rng: random.Random,
    ) -> None:
        next_kill = time.monotonic() + rng.uniform(0, kill_every) if kill_every else math.inf
        while True:
            client = self.clients[user]
            assert client.transport is not None
            peer = client.transport.get_extra_info("peername")
            port = peer[1] if peer else 0
            until = min(next_kill, deadline)
            if not client.closed.done():
                with contextlib.suppress(TimeoutError):
                    wait = max(0.0, until - time.monotonic())
                    await asyncio.wait_for(asyncio.shield(client.closed), wait)
            if client.closed.done():
                cause = client.close_code or RESET
                pause = _pause(cause, 0, rng)
            elif next_kill >= deadline:
                return  # it was the deadline that came (maybe a hair early), not a kill
            else:
                client.transport.abort()  # no close frame: the network dropped it
                await client.closed
                cause, pause = KILLED, rng.uniform(0.75, 1.25) * offline
                next_kill = time.monotonic() + rng.uniform(0.5, 1.5) * kill_every
            lost_at = time.time_ns()
            await asyncio.sleep(pause)
            await self._reopen(user, ports, (cause, port, lost_at), rng)

    async def _reopen(
        self, user: str, ports: list[int], lost: tuple[int, int, int], rng: random.Random
    ) -> None:
        """Reconnect `user` with `since`, retrying until it is ready."""
        loop = asyncio.get_running_loop()
        reconnect_at = time.time_ns()
        index = rng.randrange(len(ports))
        attempts = refused = 0
        while True:
            cursor = self.clients[user].last_id
            path = self.target.path(user, self.tokens[user], cursor)
            attempt_at = time.time_ns()
            try:
                _, sock = await loop.create_connection(
                    partial(
                        ChurnSocket, self.target, user, self.stats, path, self.watch, reconnect_at
                    ),
                    "127.0.0.1",
                    ports[index % len(ports)],
                )
            except OSError:  # nothing listens there: the balancer tries the next edge
                refused += 1
                index += 1
                if refused % len(ports) == 0:  # every edge refused: the browser backs off
                    await asyncio.sleep(_pause(RESET, refused // len(ports), rng))
                continue
            attempts += 1
            sock.last_id = cursor
            self.clients[user] = sock
            try:
                await asyncio.wait_for(sock.is_ready, READY_TIMEOUT)
            except (ConnectionError, TimeoutError):
                if sock.transport is not None:
                    sock.transport.abort()
                self.stats.retries += 1
                await asyncio.sleep(_pause(sock.close_code or RESET, attempts, rng))
                index = rng.randrange(len(ports))
                continue
            cause, from_port, lost_at = lost
            to_port = ports[index % len(ports)]
            record = Reconnect(user, cause, from_port, to_port, lost_at, reconnect_at,
                               attempt_at, sock.upgraded_at, sock.ready_at, -1, attempts,
                               refused)  # fmt: skip
            self._reconnects.append((record, sock))
            return


def run(pipe: Connection, target: Target, redis_port: int) -> None:
    """The churning load client process's entry point (`Rig(client=run)`)."""
    import uvloop

    uvloop.run(serve(pipe, ChurnClient(target, redis_port)))
