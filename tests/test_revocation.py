"""Disconnect and revoke: `UIManager.disconnect()` and POST /api/v1/users/{id}/disconnect close
every socket of the user on every edge with 4401 `revoked` within a second, and the user's
tokens issued up to then are refused from then on, at connect, on in-band renewal and at the
job API; a new token (issued the next second) works. Tokens living longer than
JWT_MAX_TTL_SECONDS are refused. The same on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import jwt
import pytest
import redis

from api.refusals import RETRY_AFTER_SECONDS
from cli.local_redis import LocalRedis, free_port
from core.config import Settings
from core.security import Identity, InvalidToken, issued_before, verify_token
from edge.close_codes import CloseCode
from realtime import Recipient, UIManager
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog, Retention
from tests.harness import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    TEST_JWT_SECRET,
    Client,
    Edge,
    ServerProcess,
    closed,
    id_of,
    settings_for,
    unique,
)
from tests.local_cluster import LocalCluster
from tests.stack import SERVER_KEY, call, fresh_database, start_api

pytestmark = pytest.mark.anyio

WITHIN = 1.0  # docs/server-api.md: every socket closes within a second


def token_at(user: str, iat: int, ttl: int = 3600, business: str | None = None) -> str:
    """A token issued at `iat` (whole seconds), as an identity provider would sign it."""
    claims: dict[str, object] = {
        "sub": user, "iat": iat, "exp": iat + ttl, "aud": TEST_AUDIENCE, "iss": TEST_ISSUER,
    }  # fmt: skip
    if business is not None:
        claims["business_id"] = business
    return jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")


async def next_second_after(mark: int) -> None:
    """Wait (at most a second) for the clock to pass the mark's second: a token issued then
    is newer than the revocation. The time passing is what is under test."""
    await asyncio.sleep(max(0.0, mark + 1 - time.time()) + 0.01)


async def test_disconnect_closes_the_users_sockets_on_every_edge_and_refuses_older_tokens(
    edge: Edge,
    edge_factory: Callable[..., Edge],
    token: Callable[..., str],
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    other = edge_factory()
    user, bystander, business = unique("u"), unique("u"), unique("b")
    old = token(user, business)
    sockets = [
        await Client.connect(edge.ws_url, old),
        await Client.connect(edge.ws_url, old),
        await Client.connect(other.ws_url, old),
    ]
    unaffected = await Client.connect(edge.ws_url, token(bystander, business))

    started = time.monotonic()
    mark = UIManager.for_user(user).disconnect()
    results = await asyncio.gather(*(closed(s) for s in sockets))
    elapsed = time.monotonic() - started
    assert results == [(CloseCode.UNAUTHORIZED, "revoked")] * 3
    assert elapsed < WITHIN, elapsed
    assert abs(mark - time.time()) < 2
    ttl = int(redis_client.ttl(Recipient.user(user).revoked_key))
    # Kept as long as a token it refuses can be accepted: its lifetime, plus the leeway.
    keep = settings.jwt_max_ttl_seconds + settings.jwt_leeway_seconds + 1
    assert keep - 5 < ttl <= keep

    # Someone else of the same business keeps their socket and their events.
    event_id = UIManager.for_user(bystander).refresh()
    [frame] = await unaffected.events(1)
    assert id_of(frame) == event_id

    # The old token, and one issued in the same second as the call, are refused.
    for refused in (old, token_at(user, mark, business=business)):
        again = await Client.connect(other.ws_url, refused, wait_ready=False)
        assert await closed(again) == (CloseCode.UNAUTHORIZED, "revoked")
    assert UIManager.for_user(user).connections() == 0

    # A token issued after the revocation opens a working socket.
    await next_second_after(mark)
    fresh = await Client.connect(edge.ws_url, token(user, business))
    event_id = UIManager.for_user(user).show_toast("Welcome back", "signed in again", "info")
    [frame] = await fresh.events(1)
    assert id_of(frame) == event_id
    assert UIManager.for_user(user).connections() == 1
    for client in (fresh, unaffected):
        await client.close()


async def test_a_renewal_with_a_token_the_revocation_refuses_closes_with_4401_revoked(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    old = token(user)
    mark = UIManager.for_user(user).disconnect()
    await next_second_after(mark)
    client = await Client.connect(edge.ws_url, token(user))
    await client.ws.send('{"type":"auth","token":"' + old + '"}')
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "revoked")


async def test_a_socket_that_missed_the_announcement_is_closed_by_the_next_heartbeat(
    edge_factory: Callable[..., Edge], token: Callable[..., str], redis_client: redis.Redis
) -> None:
    """The mark set without its announcement (as when the user's channel was moving to
    another node when it was sent): the edge's heartbeat reads it within TTL / 3."""
    beating = edge_factory(PRESENCE_TTL_SECONDS="3")
    user = unique("u")
    client = await Client.connect(beating.ws_url, token(user))
    mark = int(time.time())
    redis_client.set(Recipient.user(user).revoked_key, mark, ex=60)
    started = time.monotonic()
    assert await closed(client, timeout=5) == (CloseCode.UNAUTHORIZED, "revoked")
    assert time.monotonic() - started < 1 + 1.0  # one heartbeat interval (3 s / 3), and slack

    # A newer token's socket is left alone by the heartbeats that follow.
    await next_second_after(mark)
    fresh = await Client.connect(beating.ws_url, token(user))
    await asyncio.sleep(2.5)  # two heartbeats: the behaviour under test is their passing
    event_id = UIManager.for_user(user).refresh()
    [frame] = await fresh.events(1)
    assert id_of(frame) == event_id
    await fresh.close()


def test_the_revocation_compares_whole_seconds_and_refuses_tokens_without_iat() -> None:
    def identity(iat: float | None) -> Identity:
        return Identity("42", None, None, expires_at=2e9, issued_at=iat)

    assert issued_before(identity(1000.0), 1000)
    assert issued_before(identity(1000.9), 1000)  # the same second: maybe older than the call
    assert issued_before(identity(999.0), 1000)
    assert not issued_before(identity(1001.0), 1000)
    assert issued_before(identity(None), 1000)


def test_tokens_living_longer_than_jwt_max_ttl_seconds_are_refused() -> None:
    settings = settings_for("redis://unused", jwt_max_ttl_seconds=3600)
    now = int(time.time())
    assert verify_token(token_at("42", now, ttl=3600), settings).issued_at == now
    with pytest.raises(InvalidToken, match="JWT_MAX_TTL_SECONDS"):
        verify_token(token_at("42", now, ttl=3601), settings)
    # Without iat, the lifetime left is what counts.
    claims = {"sub": "42", "aud": TEST_AUDIENCE, "iss": TEST_ISSUER}
    short = jwt.encode({**claims, "exp": now + 60}, TEST_JWT_SECRET, algorithm="HS256")
    assert verify_token(short, settings).issued_at is None
    long = jwt.encode({**claims, "exp": now + 7200}, TEST_JWT_SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="JWT_MAX_TTL_SECONDS"):
        verify_token(long, settings)


async def test_the_edge_refuses_a_token_living_longer_than_the_maximum(
    edge: Edge, token: Callable[..., str], settings: Settings
) -> None:
    client = await Client.connect(
        edge.ws_url, token(unique("u"), ttl=settings.jwt_max_ttl_seconds + 1), wait_ready=False
    )
    assert await client.closed_with() == CloseCode.UNAUTHORIZED


# -- the server API ----------------------------------------------------------------------


async def test_post_disconnect_closes_the_sockets_and_the_old_token_gets_401_at_the_api(
    api: ServerProcess, edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    old = token(user)
    assert call(api, "GET", "/orders", old).status_code == 200
    client = await Client.connect(edge.ws_url, old)

    started = time.monotonic()
    answer = call(api, "POST", f"/users/{user}/disconnect", SERVER_KEY)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] == user
    assert abs(body["revoked_at"] - time.time()) < 2
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "revoked")
    assert time.monotonic() - started < WITHIN

    refused = call(api, "GET", "/orders", old)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "token revoked"}
    assert "invalid_token" in refused.headers["www-authenticate"]
    await next_second_after(body["revoked_at"])
    assert call(api, "GET", "/orders", token(user)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/users/{user}/disconnect", "/presence/users/{user}", "/presence/businesses/{user}"]
)
def test_the_server_api_takes_a_server_key_only(
    api: ServerProcess, token: Callable[..., str], path: str
) -> None:
    user = unique("u")
    method = "POST" if path.endswith("disconnect") else "GET"
    url = path.format(user=user)
    user_token = call(api, method, url, token(user))
    assert user_token.status_code == 403, user_token.text
    assert "server credential" in user_token.json()["detail"]
    for key in (None, "not-a-key-" + "x" * 40):
        refused = call(api, method, url, key)
        assert refused.status_code == 401, refused.text
        assert "www-authenticate" in refused.headers
    # The user's own token still works where a user's token belongs: nobody was disconnected.
    assert call(api, "GET", "/orders", token(user)).status_code == 200


@pytest.mark.parametrize("bad", ["x" * 257, "new\nline", "nul\x00", "del\x7f", "c1\x85"])
def test_an_id_that_no_user_can_have_is_a_422_naming_it(api: ServerProcess, bad: str) -> None:
    answer = call(api, "POST", f"/users/{quote(bad, safe='')}/disconnect", SERVER_KEY)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"][0]["loc"] == ["path", "user_id"]
    assert bad not in answer.text  # never echoed


async def test_presence_over_http(
    api: ServerProcess, edge: Edge, token: Callable[..., str]
) -> None:
    user, colleague, business = unique("u"), unique("u/with-slash"), unique("b")
    sockets = [
        await Client.connect(edge.ws_url, token(user, business)),
        await Client.connect(edge.ws_url, token(user, business)),
        await Client.connect(edge.ws_url, token(colleague, business)),
    ]
    answer = call(api, "GET", f"/presence/users/{user}", SERVER_KEY)
    assert answer.json() == {"user_id": user, "online": True, "connections": 2}
    answer = call(api, "GET", f"/presence/users/{colleague}", SERVER_KEY)
    assert answer.json() == {"user_id": colleague, "online": True, "connections": 1}
    counts = {user: 2, colleague: 1}
    expected = [{"user_id": u, "connections": counts[u]} for u in sorted(counts)]
    deadline = time.monotonic() + 5
    while (body := call(api, "GET", f"/presence/businesses/{business}", SERVER_KEY).json()) != {
        "business_id": business,
        "users": expected,
    }:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    for client in sockets:
        await client.close()
    nobody = unique("u")
    assert call(api, "GET", f"/presence/users/{nobody}", SERVER_KEY).json() == {
        "user_id": nobody, "online": False, "connections": 0,
    }  # fmt: skip


def test_a_disconnect_no_replica_confirms_is_a_503_not_a_success(
    redis_server: LocalRedis, artifacts: Path
) -> None:
    """EVENTS_MIN_REPLICAS=1 against a Redis without replicas: the revocation cannot be made
    durable, so the caller is told to try again rather than told it is done."""
    with fresh_database("sqlite", artifacts) as url:
        api = start_api(
            redis_server.url, artifacts, url,
            EVENTS_MIN_REPLICAS="1", EVENTS_MIN_REPLICAS_TIMEOUT_MS="50",
        )  # fmt: skip
        try:
            response = call(api, "POST", f"/users/{unique('u')}/disconnect", SERVER_KEY)
        finally:
            api.stop()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "detail": "disconnect: 0 of 1 replicas confirmed the write in 50 ms (EVENTS_MIN_REPLICAS)"
    }


# -- on a real Redis Cluster -------------------------------------------------------------


async def test_disconnect_on_a_cluster(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    log = EventLog(sync_client(redis_cluster.url), Retention(1000, 3600))
    users = [unique("u") for _ in range(6)]  # their slots on different masters
    old = {user: token(user) for user in users}
    sockets = {
        user: [await Client.connect(edge.ws_url, old[user]) for edge in cluster_edges]
        for user in users
    }
    started = time.monotonic()
    marks = [UIManager(Recipient.user(user), log).disconnect() for user in users]
    results = await asyncio.gather(*(closed(s) for user in users for s in sockets[user]))
    assert time.monotonic() - started < WITHIN
    assert results == [(CloseCode.UNAUTHORIZED, "revoked")] * (2 * len(users))
    for user in users:
        again = await Client.connect(cluster_edges[1].ws_url, old[user], wait_ready=False)
        assert await closed(again) == (CloseCode.UNAUTHORIZED, "revoked")
    await next_second_after(max(marks))
    fresh = await Client.connect(cluster_edges[0].ws_url, token(users[0]))
    assert UIManager(Recipient.user(users[0]), log).connections() == 1
    await fresh.close()
    log.client.close()


def test_a_user_request_whose_revocation_check_gets_no_answer_is_a_503_then_answers_again(
    redis_server: LocalRedis, artifacts: Path, token: Callable[..., str], tmp_path: Path
) -> None:
    """The events Redis paused (SIGSTOP) under a user's request: the API's revocation check
    gives up within its socket timeout and answers 503 with Retry-After, not a hang or a 500;
    once Redis answers again, so does the API, each request reading its own reply."""
    events = LocalRedis(free_port(), tmp_path / "events").start()
    assert events.process is not None
    user = unique("u")
    try:
        with fresh_database("sqlite", artifacts) as url:
            api = start_api(redis_server.url, artifacts, url, EVENTS_REDIS_URL=events.url)
            try:
                assert call(api, "GET", "/orders", token(user)).status_code == 200
                os.kill(events.process.pid, signal.SIGSTOP)
                try:
                    started = time.monotonic()
                    refused = call(api, "GET", "/orders", token(user))
                    waited = time.monotonic() - started
                finally:
                    os.kill(events.process.pid, signal.SIGCONT)
                again = call(api, "GET", "/orders", token(user))
            finally:
                api.stop()
    finally:
        events.stop()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert refused.json() == {"detail": "the revocation check (the events Redis) did not answer"}
    assert waited < 9  # the events client's 5 s socket timeout, not the caller's 10 s
    assert again.status_code == 200
