"""In-band renewal: `{"type":"auth","token":...}` on an open socket moves the session's expiry
to the new token's, so a long-lived page never drops its socket; a token that is invalid, or
speaks for another user or business, closes the socket with 4401."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import pytest

from core.config import Settings
from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import Client, Edge, id_of, token_for, unique

pytestmark = pytest.mark.anyio


async def renew(client: Client, token: str) -> None:
    await client.ws.send(json.dumps({"type": "auth", "token": token}))


async def test_a_renewed_session_outlives_its_first_token_and_keeps_receiving(
    edge: Edge, settings: Settings
) -> None:
    user, business = unique("u"), unique("b")
    opened = time.monotonic()
    client = await Client.connect(edge.ws_url, token_for(settings, user, business, 2))
    await renew(client, token_for(settings, user, business, 60))
    # Let the first token's lifetime (and the leeway past its exp) run out: the behaviour
    # under test is the clock itself.
    first_accepted_for = 2 + settings.jwt_leeway_seconds
    await asyncio.sleep(max(0.0, first_accepted_for + 1.5 - (time.monotonic() - opened)))
    event_id = UIManager.for_user(user).show_toast("Still here", "renewed", "info")
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    await client.close()


async def test_a_renewal_with_a_shorter_token_moves_the_expiry_earlier(
    edge: Edge, settings: Settings
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token_for(settings, user, None, 3600))
    started = time.monotonic()
    await renew(client, token_for(settings, user, None, 2))
    # Closed when the new token is no longer accepted: its exp plus JWT_LEEWAY_SECONDS.
    until = 2 + settings.jwt_leeway_seconds
    assert await client.closed_with(timeout=until + 5) == CloseCode.UNAUTHORIZED
    assert time.monotonic() - started < until + 3


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda s, user, business: token_for(s, unique("u"), business), id="user"),
        pytest.param(lambda s, user, business: token_for(s, user, unique("b")), id="business"),
        pytest.param(lambda s, user, business: token_for(s, user, None), id="no-business"),
        pytest.param(
            lambda s, user, business: token_for(s, user, business)[:-4] + "AAAA", id="forged"
        ),
        pytest.param(
            lambda s, user, business: token_for(s, user, business, -10),
            id="expired",
        ),
    ],
)
async def test_a_renewal_that_does_not_speak_for_the_same_session_closes_it_with_4401(
    edge: Edge, settings: Settings, other: Callable[[Settings, str, str], str]
) -> None:
    user, business = unique("u"), unique("b")
    client = await Client.connect(edge.ws_url, token_for(settings, user, business))
    await renew(client, other(settings, user, business))
    assert await client.closed_with() == CloseCode.UNAUTHORIZED


async def test_frames_that_are_not_auth_messages_are_ignored(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    for frame in ("hello", "{}", '{"type":"auth"}', '{"type":"auth","token":7}', "[[[[]]]]"):
        await client.ws.send(frame)
    event_id = UIManager.for_user(user).refresh()
    [received] = await client.events(1)
    assert id_of(received) == event_id
    await client.close()


async def test_a_renewal_is_read_whenever_it_comes_after_a_burst_or_an_idle_spell(
    edge: Edge, settings: Settings
) -> None:
    """The edge reads a socket only while a message waits (`edge.pump.HelperTasks`): each
    renewal here comes at a different moment of that reader's life, in a burst, right after
    one, and once the socket has been idle long enough to deliver an event, and each is
    read."""
    user, business = unique("u"), unique("b")
    client = await Client.connect(edge.ws_url, token_for(settings, user, business))
    for n in range(300):
        await client.ws.send("not an auth message" if n % 50 else "{}")
    await renew(client, token_for(settings, user, business, 3600))
    event_id = UIManager.for_user(user).refresh()
    [received] = await client.events(1)  # the socket is idle: nothing waits to be read
    assert id_of(received) == event_id
    await renew(client, token_for(settings, unique("u"), business))  # not this session's
    assert await client.closed_with() == CloseCode.UNAUTHORIZED
