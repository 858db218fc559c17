"""Slow clients, dead peers, Redis restarts and shutdowns: nobody else is delayed, and
nothing is lost without the client being told."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from cli.local_redis import LocalRedis, free_port
from core.config import Settings
from edge.close_codes import CloseCode
from realtime import Recipient, UIManager
from realtime.eventlog import EventLog, Retention
from tests.harness import WAIT, Client, Edge, eventually, id_of, unique

pytestmark = pytest.mark.anyio


def bulky() -> str:
    """16 KB frames: big frames make backpressure show fast."""
    return secrets.token_hex(8_000)


def small_receive_window(edge: Edge) -> dict[str, Any]:
    """Options that make a client slow: a small fixed TCP receive buffer (no autotuning up
    to tens of MB) and a library that stops reading after one unconsumed frame."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.connect(("127.0.0.1", edge.port))
    return {"sock": sock, "max_queue": 1}


async def test_a_slow_client_does_not_delay_a_fast_one_and_resumes_after_1013(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = edge_factory(WS_SEND_BUFFER="32")
    business = unique("b")
    slow = await Client.connect(
        edge.ws_url, token(unique("slow"), business), **small_receive_window(edge)
    )
    fast = await Client.connect(edge.ws_url, token(unique("fast"), business))
    ui = UIManager.for_business(business)
    count = 600
    fast_reading = asyncio.create_task(fast.events(count, timeout=30))
    # Published from a thread, as a worker would, while the fast client reads.
    ids = await asyncio.to_thread(
        lambda: [ui.update_ui({"n": n, "pad": bulky()}) for n in range(count)]
    )

    received = [id_of(f) for f in await fast_reading]
    assert received == ids

    # The slow client now reads what reached it, then finds the socket closed with 1013 ...
    assert await slow.closed_with(timeout=30) == CloseCode.TRY_AGAIN_LATER
    seen = [id_of(f) for f in slow.frames if f["type"].startswith("ui_")]
    assert 0 < len(seen) < len(ids)
    # ... and resuming with `since` delivers the rest: nothing lost, nothing twice.
    resumed = await Client.connect(edge.ws_url, token(unique("slow"), business), since=seen[-1])
    seen += [id_of(f) for f in resumed.frames if f["type"].startswith("ui_")]
    assert seen == ids
    for client in (fast, resumed):
        await client.close()


async def test_updates_with_one_coalesce_key_are_merged_for_a_slow_client_not_dropped(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = edge_factory(WS_SEND_BUFFER="32")
    user = unique("u")
    slow = await Client.connect(edge.ws_url, token(user), **small_receive_window(edge))
    ui = UIManager.for_user(user)
    last = ""
    for n in range(600):
        last = ui.update_ui({"n": n, "pad": bulky()}, coalesce_key="metrics")
    toast = ui.show_toast("Done", "after the updates", "success")
    frames: list[dict[str, object]] = []
    async with asyncio.timeout(30):
        while not frames or frames[-1]["type"] != "ui_toast" or id_of(frames[-1]) != toast:
            frames.append(await slow.recv())
    updates = [f for f in frames if f["type"] == "ui_update"]
    assert len(updates) < 600  # some were merged while the client lagged ...
    assert id_of(updates[-1]) == last  # ... but the newest state always arrives
    assert frames[-1]["type"] == "ui_toast"  # and the toast is never dropped
    await slow.close()


async def test_a_peer_that_stops_answering_pings_is_evicted(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = edge_factory(WS_PING_INTERVAL_SECONDS="0.5", WS_PING_TIMEOUT_SECONDS="0.5")
    # A raw socket that completes the handshake and then never reads or answers anything.
    dead = socket.create_connection(("127.0.0.1", edge.port))
    key = base64.b64encode(os.urandom(16)).decode()
    dead.sendall(
        (
            f"GET /api/v1/insight?token={token(unique('dead'))} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{edge.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    dead.settimeout(WAIT)
    assert b"101" in dead.recv(1024)
    await eventually(lambda: edge.connection_count() == 1)
    await eventually(lambda: edge.connection_count() == 0)  # evicted for not answering pings
    dead.close()


@pytest.fixture
def private_redis(artifacts: Path) -> Iterator[LocalRedis]:
    """A Redis of this test's own, so it can be killed without disturbing the others."""
    server = LocalRedis(free_port(), artifacts / f"redis-{uuid.uuid4().hex[:6]}").start()
    yield server
    server.stop()


async def test_events_after_a_redis_restart_still_arrive(
    edge_factory: Callable[..., Edge], token: Callable[..., str], private_redis: LocalRedis
) -> None:
    edge = edge_factory(redis_url=private_redis.url)
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    retention = Retention(1000, 3600)
    before = UIManager(
        Recipient.user(user), log=EventLog(redis.Redis.from_url(private_redis.url), retention)
    )
    first = before.show_toast("Before", "the restart", "info")
    assert [id_of(f) for f in await client.events(1)] == [first]

    private_redis.kill()
    with pytest.raises(redis.ConnectionError):  # the producer is told, so its task can retry
        before.refresh()
    private_redis.start()
    after = UIManager(
        Recipient.user(user), log=EventLog(redis.Redis.from_url(private_redis.url), retention)
    )
    later = [after.update_ui({"n": n}) for n in range(3)]  # likely before the edge resubscribed
    frames = [id_of(f) for f in await client.events(3, timeout=20)]
    assert frames == later
    # The restarted Redis kept nothing, so the client is told its history may have a hole.
    assert any(f["type"] == "insight_gap" for f in client.frames)
    # And the edge is live again, not only caught up.
    live = after.refresh()
    assert [id_of(f) for f in await client.events(1)] == [live]
    await client.close()


async def test_a_frozen_redis_is_detected_and_the_edge_recovers_when_it_thaws(
    edge_factory: Callable[..., Edge], token: Callable[..., str], private_redis: LocalRedis
) -> None:
    edge = edge_factory(redis_url=private_redis.url, PUBSUB_PING_INTERVAL_SECONDS="0.3")
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    assert private_redis.process is not None
    private_redis.process.send_signal(signal.SIGSTOP)  # alive, connected, and silent
    try:
        await eventually(lambda: "redis did not answer PING" in edge.log_text())
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    ui = UIManager(
        Recipient.user(user),
        log=EventLog(redis.Redis.from_url(private_redis.url), Retention(1000, 3600)),
    )
    event_id = ui.refresh()
    assert [id_of(f) for f in await client.events(1, timeout=20)] == [event_id]
    await client.close()


async def test_sigterm_closes_every_socket_with_1012_and_exits_promptly(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = edge_factory()
    clients = [await Client.connect(edge.ws_url, token(unique("u"))) for _ in range(5)]
    started = time.monotonic()
    closes = [asyncio.create_task(c.closed_with()) for c in clients]
    await asyncio.sleep(0)  # let the readers start before the signal
    exit_code = await asyncio.to_thread(edge.terminate)
    assert [await task for task in closes] == [CloseCode.SERVER_RESTARTING] * 5
    # uvicorn re-raises the signal after a clean shutdown, so a supervisor sees why it ended.
    assert exit_code in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in edge.log_text()
    drain = Settings.model_fields["ws_shutdown_drain_seconds"].default  # each 1012 within it
    assert time.monotonic() - started < drain + 5
