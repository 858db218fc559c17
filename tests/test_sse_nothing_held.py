"""Nothing held, over SSE (docs/sse.md): a stream whose reader stops reading is dropped as a
WebSocket peer is, and its descriptor, its task and its slot of the per-user cap freed within
WS_PING_INTERVAL_SECONDS + WS_PING_TIMEOUT_SECONDS plus a few seconds, even while the reader's
TCP window stays shut: when its bounded buffer fills (1013), when its transport takes nothing
for that long, and when the edge ends it for another reason (revocation).

The reader is the worst one (`tests.stalled_peer`): it reads the response head on a socket
with the smallest receive buffer the kernel allows and then never reads again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from realtime import UIManager
from tests.harness import Edge, unique
from tests.sse_client import ticket_for
from tests.stalled_peer import StalledPeer
from tests.test_nothing_held import BOUND, fill, released_within, stalling_edge

__all__ = ["stalling_edge"]  # the fixture (fast pings), used by name

pytestmark = pytest.mark.anyio

KEEPALIVE = 1.0  # the stall is seen at a keep-alive, so the bound allows one more
SSE = {"SSE_KEEPALIVE_SECONDS": str(KEEPALIVE)}


async def stalled_readers(edge: Edge, jwt: str, count: int) -> list[StalledPeer]:
    return [
        StalledPeer(edge.port, jwt, sse_ticket=await ticket_for(edge.http_url, jwt))
        for _ in range(count)
    ]


async def test_a_full_buffer_drops_a_reader_that_never_reads_within_the_bound(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge(WS_SEND_BUFFER="8", **SSE)
    user = unique("stalled")
    peers = await stalled_readers(edge, token(user), 3)
    try:
        assert UIManager.for_user(user).connections() == 3
        await fill(user)
        await released_within(edge, user, peers, BOUND)
    finally:
        for peer in peers:
            peer.close()
    assert edge.log_text().count('"close_code": 1013') >= 3


async def test_a_transport_that_takes_nothing_for_a_ping_deadline_is_dropped(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge(WS_SEND_BUFFER="100000", **SSE)  # a buffer the fill cannot overflow
    user = unique("stalled")
    peers = await stalled_readers(edge, token(user), 1)
    try:
        await fill(user)
        await released_within(edge, user, peers, BOUND + KEEPALIVE)
    finally:
        peers[0].close()


async def test_a_revoked_reader_that_never_reads_is_released_within_the_bound(
    stalling_edge: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = stalling_edge(WS_SEND_BUFFER="100000", WS_PING_TIMEOUT_SECONDS="600", **SSE)
    user = unique("stalled")
    peers = await stalled_readers(edge, token(user), 1)
    try:
        await fill(user)
        decided = time.monotonic()
        UIManager.for_user(user).disconnect()
        await released_within(edge, user, peers, decided - time.monotonic() + BOUND)
    finally:
        peers[0].close()
