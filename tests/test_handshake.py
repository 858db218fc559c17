"""Who may connect, how the token may travel, and the close code for every refusal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import jwt
import pytest
from websockets.asyncio.client import connect

from core.config import Settings
from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import (
    TEST_AUDIENCE,
    TEST_ISSUER,
    TEST_JWT_SECRET,
    WAIT,
    Client,
    Edge,
    as_published,
    id_of,
    unique,
)

pytestmark = pytest.mark.anyio


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": unique("u"), "exp": int(time.time()) + 60,
        "aud": TEST_AUDIENCE, "iss": TEST_ISSUER,
    }  # fmt: skip
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


BAD_TOKENS = {
    "expired": jwt.encode(_claims(exp=int(time.time()) - 10), TEST_JWT_SECRET, "HS256"),
    "wrong-signature": jwt.encode(_claims(), "another-secret-entirely-0123456789abc", "HS256"),
    "alg-none": jwt.encode(_claims(), "", algorithm="none"),
    "missing-exp": jwt.encode(_claims(exp=None), TEST_JWT_SECRET, "HS256"),
    "wrong-audience": jwt.encode(_claims(aud="elsewhere"), TEST_JWT_SECRET, "HS256"),
    "garbage": "not-a-token",
}


@pytest.mark.parametrize("bad", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_a_bad_token_is_closed_with_4401(edge: Edge, bad: str) -> None:
    client = await Client.connect(edge.ws_url, bad, wait_ready=False)
    assert await client.closed_with() == CloseCode.UNAUTHORIZED


async def test_no_token_at_all_is_closed_with_4401(edge: Edge) -> None:
    async with connect(edge.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": BAD_TOKENS["expired"]}))
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == CloseCode.UNAUTHORIZED


async def test_unknown_channel_is_closed_with_4403(edge: Edge, token: Callable[..., str]) -> None:
    client = await Client.connect(
        edge.ws_url, token("u1"), query={"channel": "admin_events"}, wait_ready=False
    )
    assert await client.closed_with() == CloseCode.FORBIDDEN


async def test_explicit_default_channel_is_accepted(edge: Edge, token: Callable[..., str]) -> None:
    client = await Client.connect(edge.ws_url, token("u1"), query={"channel": "ui_events"})
    assert client.frames[-1]["type"] == "insight_ready"
    await client.close()


@pytest.mark.parametrize(
    "since",
    [
        "yesterday",
        # A part over 64 bits names no Stream entry: before, it got 1013 ("reconnect
        # later"), for ever, as Redis refused the position.
        f"u1.{2**64}-0",
        f"u1.1-{2**64}",
    ],
)
async def test_malformed_since_is_closed_with_4400(
    edge: Edge, token: Callable[..., str], since: str
) -> None:
    client = await Client.connect(edge.ws_url, token("u1"), since=since, wait_ready=False)
    assert await client.closed_with() == CloseCode.MALFORMED


async def test_token_in_the_subprotocol_keeps_it_out_of_the_url(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    async with connect(
        edge.ws_url,
        subprotocols=["insight", f"insight.bearer.{token(user)}"],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == "insight"
        ready = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert ready["type"] == "insight_ready"
        event_id = UIManager.for_user(user).refresh()
        assert as_published(json.loads(await asyncio.wait_for(ws.recv(), WAIT))) == {
            "id": event_id, "type": "ui_refresh",
        }  # fmt: skip


async def test_token_in_the_first_frame(edge: Edge, token: Callable[..., str]) -> None:
    user = unique("u")
    async with connect(edge.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(user)}))
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "insight_ready"
        event_id = UIManager.for_user(user).refresh()
        assert id_of(json.loads(await asyncio.wait_for(ws.recv(), WAIT))) == event_id


@pytest.mark.parametrize(
    "bad",
    [*BAD_TOKENS.values(), "<not a JWT>", ""],
    ids=[*BAD_TOKENS.keys(), "not-shaped-like-a-jwt", "empty"],
)
async def test_an_auth_message_with_a_bad_token_is_closed_with_4401(edge: Edge, bad: str) -> None:
    """An auth message it is, with a bad token: 4401 as for the query and the subprotocol
    (before, a token not shaped like a JWT got 4400, "first frame must be an auth message")."""
    async with connect(edge.ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": bad}))
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == CloseCode.UNAUTHORIZED


async def test_a_first_frame_that_is_not_an_auth_message_is_closed_with_4400(edge: Edge) -> None:
    async with connect(edge.ws_url) as ws:
        await ws.send("hello?")
        await asyncio.wait_for(ws.wait_closed(), WAIT)
        assert ws.close_code == CloseCode.MALFORMED


async def test_a_token_that_expires_during_the_session_closes_it_with_4401(
    edge: Edge, settings: Settings
) -> None:
    from core.security import issue_token

    short = issue_token(settings, unique("u"), ttl_seconds=2)
    client = await Client.connect(edge.ws_url, short)
    # Closed once the token is no longer accepted: its exp plus JWT_LEEWAY_SECONDS.
    until = 2 + settings.jwt_leeway_seconds
    assert await client.closed_with(timeout=until + WAIT) == CloseCode.UNAUTHORIZED


async def test_an_oversized_inbound_frame_closes_the_socket(
    edge: Edge, token: Callable[..., str]
) -> None:
    client = await Client.connect(edge.ws_url, token("u1"))
    await client.ws.send("x" * 100_000)
    assert await client.closed_with() == CloseCode.MESSAGE_TOO_BIG


async def test_an_origin_outside_the_allow_list_is_closed_with_4403(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    strict = edge_factory(ALLOWED_ORIGINS="https://app.example.com")
    refused = await Client.connect(
        strict.ws_url, token("u1"), wait_ready=False, origin="https://evil.example.com"
    )
    assert await refused.closed_with() == CloseCode.FORBIDDEN
    allowed = await Client.connect(strict.ws_url, token("u1"), origin="https://app.example.com")
    assert allowed.frames[-1]["type"] == "insight_ready"
    await allowed.close()


async def test_the_token_never_reaches_the_edge_log(edge: Edge, token: Callable[..., str]) -> None:
    secret = token("u-log-check")
    client = await Client.connect(edge.ws_url, secret)
    await client.close()
    await Client.connect(edge.ws_url, secret + "tampered", wait_ready=False)
    log = edge.log_text()
    assert "token=[redacted]" in log  # the upgrade line was logged, with the token cut out
    assert secret.split(".")[2] not in log
    assert secret not in log
