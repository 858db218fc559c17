"""Nothing held (docs/protocol.md, "Delivery guarantees"): a socket whose peer stops reading is
closed, and its file descriptor, its task and its slot of the per-user cap freed, within
WS_PING_INTERVAL_SECONDS + WS_PING_TIMEOUT_SECONDS plus a few seconds, even while the peer's
TCP window stays shut; the same bound holds for every close the edge decides (1013 for a full
buffer, a token that expires, a revocation, a shutdown).

The peer here is the worst one: it completes the handshake on a socket with the smallest
receive buffer the kernel allows and then never reads again, so that once a few events have
filled both kernel buffers the edge's transport can write nothing, not even a close frame.
Before the fix such sockets were still held 46 s later: the 1013 waited for the transport to
become writable, and uvicorn's close waited for its write buffer to drain.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.local_redis import LocalRedis
from realtime import UIManager
from tests.harness import Edge, eventually, start_edge, unique
from tests.stalled_peer import StalledPeer, sockets_held

pytestmark = pytest.mark.anyio

PING_INTERVAL = 1.0
PING_TIMEOUT = 1.0
FEW_SECONDS = 4.0  # the grace the guarantee allows after the ping deadline
BOUND = PING_INTERVAL + PING_TIMEOUT + FEW_SECONDS
PAYLOAD = "x" * 30_000  # events big enough to fill the kernel buffers in a few dozen


@pytest.fixture
def stalling_edge(redis_server: LocalRedis, artifacts: Path) -> Iterator[Callable[..., Edge]]:
    """An edge with fast pings (and other settings as asked); stopped after the test."""
    started: list[Edge] = []

    def start(**env: str) -> Edge:
        settings = {
            "WS_PING_INTERVAL_SECONDS": str(PING_INTERVAL),
            "WS_PING_TIMEOUT_SECONDS": str(PING_TIMEOUT),
            **env,
        }
        edge = start_edge(redis_server.url, artifacts, **settings)
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop()


async def fill(user: str, events: int = 120) -> None:
    """Publish enough to the user that a peer which never reads stops taking data."""
    ui = UIManager.for_user(user)
    for index in range(events):
        ui.update_ui({"n": index, "pad": PAYLOAD})
    await asyncio.sleep(0)


async def released_within(edge: Edge, user: str, peers: list[StalledPeer], bound: float) -> None:
    """Wait until the edge holds no connection, the user counts none in presence, and the
    edge has closed its end of every peer's TCP connection."""
    await eventually(
        lambda: (
            edge.connection_count() == 0
            and UIManager.for_user(user).connections() == 0
            and sockets_held(edge, peers) == 0
        ),
        timeout=bound,
    )


async def test_a_full_buffer_closes_a_peer_that_never_reads_within_the_bound(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge(WS_SEND_BUFFER="8")
    user = unique("stalled")
    peers = [StalledPeer(edge.port, token(user)) for _ in range(3)]
    try:
        await eventually(lambda: UIManager.for_user(user).connections() == 3)
        assert sockets_held(edge, peers) == 3
        await fill(user)
        await released_within(edge, user, peers, BOUND)
    finally:
        for peer in peers:
            peer.close()
    log = edge.log_text()
    assert log.count('"close_code": 1013') >= 3, log[-3000:]


@pytest.mark.parametrize("why", ["token expiry", "revocation"])
async def test_every_close_the_edge_decides_is_bounded_for_a_peer_that_never_reads(
    why: str, stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    # A buffer the fill cannot overflow: the close is the edge's other decision.
    edge = stalling_edge(WS_SEND_BUFFER="100000")
    user = unique("stalled")
    ttl = 4 if why == "token expiry" else 3600
    peer = StalledPeer(edge.port, token(user, ttl=ttl))
    try:
        await eventually(lambda: UIManager.for_user(user).connections() == 1)
        await fill(user)
        decided = time.monotonic()
        if why == "revocation":
            UIManager.for_user(user).disconnect()
        else:
            decided += ttl
        await released_within(edge, user, [peer], decided - time.monotonic() + BOUND)
    finally:
        peer.close()


async def test_a_shutdown_is_not_held_up_by_a_peer_that_never_reads(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge(WS_SEND_BUFFER="100000")
    user = unique("stalled")
    peer = StalledPeer(edge.port, token(user))
    try:
        await eventually(lambda: UIManager.for_user(user).connections() == 1)
        await fill(user)
        started = time.monotonic()
        assert edge.process is not None
        edge.process.terminate()
        edge.process.wait(timeout=15)
        assert time.monotonic() - started < BOUND + 5  # uvicorn's graceful shutdown: 5 s
    finally:
        peer.close()
    assert "Traceback" not in edge.log_text()


async def test_a_silent_peer_is_dropped_by_the_ping_deadline(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge()
    user = unique("silent")
    peer = StalledPeer(edge.port, token(user))
    try:
        await eventually(lambda: UIManager.for_user(user).connections() == 1)
        await released_within(edge, user, [peer], BOUND)
    finally:
        peer.close()


def test_the_stalled_peer_really_advertises_a_tiny_window() -> None:
    """The premise of the tests above: the kernel gives the peer a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 16_384
    sock.close()
