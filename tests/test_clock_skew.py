"""Clocks differ: `iat`, `nbf` and `exp` are checked with JWT_LEEWAY_SECONDS (default 5) of
leeway, by real edges and the real job API. A token issued by a clock 2 s fast is accepted,
one 10 s fast is refused; a token that expired 2 s ago is still accepted, and its socket is
closed with 4401 once the leeway is over."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from edge.close_codes import CloseCode
from realtime import UIManager
from tests.awkward_ids import signed
from tests.harness import Client, Edge, ServerProcess, closed, id_of, unique
from tests.stack import call

pytestmark = pytest.mark.anyio

LEEWAY = 5.0  # JWT_LEEWAY_SECONDS by default


async def test_a_token_issued_two_seconds_ahead_is_accepted_by_the_edge_and_the_api(
    edge: Edge, api: ServerProcess
) -> None:
    user = unique("u")
    ahead = int(time.time()) + 2
    token = signed(user, iat=ahead, exp=ahead + 600)
    client = await Client.connect(edge.ws_url, token)
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(frame) for frame in await client.events(1)] == [event_id]
    assert call(api, "GET", "/orders", token).status_code == 200
    await client.close()


async def test_a_token_issued_ten_seconds_ahead_is_refused_by_the_edge_and_the_api(
    edge: Edge, api: ServerProcess
) -> None:
    ahead = int(time.time()) + 10
    token = signed(unique("u"), iat=ahead, exp=ahead + 600)
    client = await Client.connect(edge.ws_url, token, wait_ready=False)
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "invalid token")
    assert call(api, "GET", "/orders", token).status_code == 401


async def test_a_token_valid_from_two_seconds_ahead_is_accepted(
    edge: Edge, api: ServerProcess
) -> None:
    now = int(time.time())
    token = signed(unique("u"), iat=now, nbf=now + 2, exp=now + 600)
    client = await Client.connect(edge.ws_url, token)
    assert call(api, "GET", "/orders", token).status_code == 200
    await client.close()


async def test_a_token_expired_two_seconds_ago_is_accepted_until_the_leeway_is_over(
    edge: Edge, api: ServerProcess
) -> None:
    user = unique("u")
    expired = time.time() - 2
    token = signed(user, iat=int(expired) - 600, exp=int(expired))
    client = await Client.connect(edge.ws_url, token)
    event_id = UIManager.for_user(user).refresh()
    assert [id_of(frame) for frame in await client.events(1)] == [event_id]
    assert call(api, "GET", "/orders", token).status_code == 200
    # The edge closes the socket when the token's time is up: exp plus the leeway.
    assert await closed(client, timeout=LEEWAY + 5) == (CloseCode.UNAUTHORIZED, "unauthorized")
    assert time.time() >= int(expired) + LEEWAY - 0.5


async def test_a_token_expired_ten_seconds_ago_is_refused(edge: Edge, api: ServerProcess) -> None:
    expired = int(time.time()) - 10
    token = signed(unique("u"), iat=expired - 600, exp=expired)
    client = await Client.connect(edge.ws_url, token, wait_ready=False)
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "invalid token")
    assert call(api, "GET", "/orders", token).status_code == 401


async def test_the_leeway_is_a_setting(edge_factory: Callable[..., Edge]) -> None:
    strict = edge_factory(JWT_LEEWAY_SECONDS="0")
    ahead = int(time.time()) + 2
    token = signed(unique("u"), iat=ahead, exp=ahead + 600)
    client = await Client.connect(strict.ws_url, token, wait_ready=False)
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "invalid token")
