"""A Redis that stalls or restarts is waited for a bounded time, never for ever.

With Redis stopped (SIGSTOP) for 12 s, new WebSockets were not even accepted for the whole
stall (the clock read before the accept had no time limit), and the edge's /readyz did not
answer until Redis came back; after a Redis restart, the first POST /publish got 503 (a stale
pooled connection). Now: the handshake's Redis reads are bounded (then the socket is accepted
and closed 1013), /readyz answers 503 within 2 s, and a stale connection is retried once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cli.local_redis import LocalRedis, free_port
from edge.close_codes import CloseCode
from tests.harness import Client, Edge, ServerProcess, start_edge, unique
from tests.stack import SERVER_KEY, fresh_database, start_api

pytestmark = [pytest.mark.anyio, pytest.mark.integration]  # Redis servers of its own

STALL_BOUND = 2.0  # WS_SUBSCRIBE_TIMEOUT_SECONDS of these edges


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis of this test's own, to stop and restart without touching anyone else's."""
    server = LocalRedis(free_port(), tmp_path / "redis").start()
    yield server
    if server.process is not None and server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


@contextmanager
def stopped(server: LocalRedis) -> Iterator[None]:
    """Redis frozen (SIGSTOP): its sockets stay open and nothing answers."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.fixture
def stall_edge(own_redis: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    edge = start_edge(own_redis.url, artifacts, WS_SUBSCRIBE_TIMEOUT_SECONDS=str(STALL_BOUND))
    yield edge
    edge.stop()


async def test_a_socket_opened_while_redis_stalls_is_accepted_and_closed_1013_in_time(
    stall_edge: Edge, token: Callable[..., str], own_redis: LocalRedis
) -> None:
    with stopped(own_redis):
        started = time.monotonic()
        client = await Client.connect(stall_edge.ws_url, token(unique("u")), wait_ready=False)
        assert await client.closed_with() == CloseCode.TRY_AGAIN_LATER
        assert time.monotonic() - started < STALL_BOUND + 2
    back = await Client.connect(stall_edge.ws_url, token(unique("u")))  # and recovers
    await back.close()


async def test_a_resume_while_redis_stalls_is_closed_1013_in_time(
    stall_edge: Edge, token: Callable[..., str], own_redis: LocalRedis
) -> None:
    """With a full `since`, no clock is read: the bound is on the catch-up's reads."""
    user = unique("u")
    first = await Client.connect(stall_edge.ws_url, token(user))
    await first.close()
    with stopped(own_redis):
        started = time.monotonic()
        client = await Client.connect(
            stall_edge.ws_url, token(user), since=first.cursor, wait_ready=False
        )
        assert await client.closed_with() == CloseCode.TRY_AGAIN_LATER
        assert time.monotonic() - started < 2 * STALL_BOUND + 2


def test_readyz_answers_503_within_two_seconds_while_redis_stalls(
    stall_edge: Edge, own_redis: LocalRedis
) -> None:
    with stopped(own_redis):
        started = time.monotonic()
        answer = httpx.get(f"{stall_edge.http_url}/readyz", timeout=10)
        assert time.monotonic() - started < 2.0
        assert answer.status_code == 503
        assert answer.json()["checks"]["redis"] is False
    assert httpx.get(f"{stall_edge.http_url}/readyz", timeout=10).status_code == 200


@pytest.fixture
def own_api(own_redis: LocalRedis, artifacts: Path) -> Iterator[ServerProcess]:
    with fresh_database("sqlite", artifacts) as url:
        api = start_api(own_redis.url, artifacts, url)
        yield api
        api.stop()


def test_the_first_publish_after_a_redis_restart_succeeds(
    own_api: ServerProcess, own_redis: LocalRedis
) -> None:
    def publish() -> httpx.Response:
        return httpx.post(
            f"{own_api.http_url}/api/v1/publish",
            json={"to": {"user": "42"}, "event": {"type": "ui_refresh"}},
            headers={"Authorization": f"Bearer {SERVER_KEY}"},
            timeout=10,
        )

    assert publish().status_code == 200  # the API's connections are open and pooled
    own_redis.stop()
    own_redis.start()
    answer = publish()
    assert answer.status_code == 200, answer.text
