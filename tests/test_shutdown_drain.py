"""A shutdown drains (WS_SHUTDOWN_DRAIN_SECONDS): every socket and every SSE stream of an edge
sent SIGTERM ends with 1012, each at its own moment within the drain, so that at a rolling
deploy their clients reach the other edges as a stream, not a herd; and the edge still exits
promptly after. Real edges, a real Redis, real clients of both transports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from edge.close_codes import CloseCode
from tests.harness import Client, Edge, unique
from tests.sse_client import SseClient

pytestmark = pytest.mark.anyio

SOCKETS, STREAMS = 30, 4


async def closes_after_sigterm(edge: Edge, token: Callable[..., str]) -> list[tuple[int, float]]:
    """Open SOCKETS sockets and STREAMS streams, SIGTERM the edge; each one's close code and
    when it came, in seconds after the signal. Also checks the edge exits with them."""
    sockets = [await Client.connect(edge.ws_url, token(unique("u"))) for _ in range(SOCKETS)]
    streams = [
        await SseClient.connect(edge.http_url, jwt=token(unique("s"))) for _ in range(STREAMS)
    ]

    async def socket_close(client: Client) -> tuple[int, float]:
        code = await client.closed_with(timeout=20)
        return code, time.monotonic()

    async def stream_close(stream: SseClient) -> tuple[int, float]:
        code, _ = await stream.closed_with(timeout=20)
        return code, time.monotonic()

    closing = [asyncio.create_task(socket_close(c)) for c in sockets]
    closing += [asyncio.create_task(stream_close(s)) for s in streams]
    await asyncio.sleep(0)  # the readers are waiting before the signal
    signalled = time.monotonic()
    exit_code = await asyncio.to_thread(edge.terminate)
    exited = time.monotonic() - signalled
    closes = [(code, at - signalled) for code, at in await asyncio.gather(*closing)]
    assert exited < max(at for _, at in closes) + 6, "the edge lingered after its last close"
    assert exit_code in (0, -15)
    await asyncio.gather(*(s.close() for s in streams))
    return closes


async def test_a_shutdown_spreads_its_1012s_over_the_drain_on_both_transports(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    closes = await closes_after_sigterm(edge_factory(WS_SHUTDOWN_DRAIN_SECONDS="2"), token)

    assert [code for code, _ in closes] == [CloseCode.SERVER_RESTARTING] * (SOCKETS + STREAMS)
    moments = sorted(at for _, at in closes)
    assert moments[-1] < 2 + 1.5  # within the drain, give or take a busy machine
    # 34 moments uniform over 2 s: their spread is under 1 s once in about 10^9 runs.
    assert moments[-1] - moments[0] > 1.0, moments
    streams = sorted(at for _, at in closes[SOCKETS:])
    assert streams[-1] - streams[0] > 0.01, "the streams ended together, not drained"


async def test_with_no_drain_every_socket_and_stream_gets_its_1012_at_once(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    closes = await closes_after_sigterm(edge_factory(WS_SHUTDOWN_DRAIN_SECONDS="0"), token)

    assert [code for code, _ in closes] == [CloseCode.SERVER_RESTARTING] * (SOCKETS + STREAMS)
    moments = sorted(at for _, at in closes)
    assert moments[-1] - moments[0] < 1.0, moments
