"""From the open: a connection without `since` receives every event published after the
browser's `open` event fired (or, with the token in a first frame, after that frame was
sent), exactly once and in order.

The worst moment is the first millisecond: each round opens a socket and publishes at once,
without waiting for `insight_ready`, as a page that greets its user or a fast job does. Then
a marker is published after `insight_ready`, and the UI events received up to the marker
must be exactly the ones published, in order: a lost, duplicated or reordered event fails
the round without waiting out a timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from cli.local_redis import LocalRedis
from realtime import UIManager
from tests.harness import Client, Edge, id_of, start_edge, unique

pytestmark = pytest.mark.anyio

ROUNDS = 30  # connect-then-publish rounds per case; today's edge lost 26 of 30 of these

TokenPlace = Literal["query", "subprotocol", "first frame"]
Addressing = Literal["user", "business", "everyone"]


@pytest.fixture(scope="module")
def two_edges(redis_server: LocalRedis, artifacts: Path) -> Iterator[tuple[Edge, Edge]]:
    """Edges of their own: broadcasts published here reach only this module's sockets."""
    edges = start_edge(redis_server.url, artifacts), start_edge(redis_server.url, artifacts)
    yield edges
    for edge in edges:
        edge.stop()


async def open_socket(url: str, jwt: str, place: TokenPlace) -> Client:
    """Open a socket the way a browser would with the token in `place`; returns once the
    browser's `open` would have fired (and, for a first frame, once it was sent)."""
    if place == "query":
        return await Client.connect(url, jwt, wait_ready=False)
    if place == "subprotocol":
        return await Client.connect(
            url, wait_ready=False, subprotocols=["insight", f"insight.bearer.{jwt}"]
        )
    client = await Client.connect(url, wait_ready=False)
    await client.ws.send(json.dumps({"type": "auth", "token": jwt}))
    return client


def publisher_for(addressing: Addressing, user: str, business: str) -> UIManager:
    if addressing == "user":
        return UIManager.for_user(user)
    if addressing == "business":
        return UIManager.for_business(business)
    return UIManager.broadcast()


async def ui_ids_until(client: Client, marker: str) -> list[str]:
    """Ids of every UI event the client received, up to and including `marker`."""
    await client.until(lambda frame: frame["type"].startswith("ui_") and id_of(frame) == marker)
    return [id_of(frame) for frame in client.frames if frame["type"].startswith("ui_")]


@pytest.mark.parametrize("addressing", ["user", "business", "everyone"])
@pytest.mark.parametrize("place", ["query", "subprotocol", "first frame"])
async def test_events_published_the_moment_a_socket_opens_arrive_once_in_order(
    two_edges: tuple[Edge, Edge],
    token: Callable[..., str],
    place: TokenPlace,
    addressing: Addressing,
) -> None:
    edge = two_edges[0]
    for round_ in range(ROUNDS):
        user, business = unique("u"), unique("b")
        ui = publisher_for(addressing, user, business)
        client = await open_socket(edge.ws_url, token(user, business), place)
        first = ui.show_toast("Welcome", f"round {round_}", "info")
        second = ui.refresh()
        await client.until(lambda frame: frame["type"] == "insight_ready")
        marker = ui.update_ui({"round": round_})
        assert await ui_ids_until(client, marker) == [first, second, marker], (
            f"round {round_}: token in the {place}, addressed to {addressing}: {client.frames}"
        )
        await client.close()


@pytest.mark.parametrize("place", ["query", "subprotocol", "first frame"])
async def test_a_second_tab_on_another_edge_gets_what_is_published_as_it_opens(
    two_edges: tuple[Edge, Edge], token: Callable[..., str], place: TokenPlace
) -> None:
    """The user's first tab is live on one edge; each round a second tab opens on the other
    edge (which has no subscription for the user yet) and an event is published at once."""
    for round_ in range(ROUNDS):
        user, business = unique("u"), unique("b")
        first_edge, second_edge = two_edges if round_ % 2 == 0 else two_edges[::-1]
        jwt = token(user, business)
        first_tab = await Client.connect(first_edge.ws_url, jwt)
        second_tab = await open_socket(second_edge.ws_url, jwt, place)
        ui = UIManager.for_user(user)
        published = ui.show_toast("Order created", f"round {round_}", "success")
        await second_tab.until(lambda frame: frame["type"] == "insight_ready")
        marker = ui.refresh()
        received = await asyncio.gather(
            ui_ids_until(first_tab, marker), ui_ids_until(second_tab, marker)
        )
        assert list(received) == [[published, marker]] * 2, f"round {round_}: token in the {place}"
        await asyncio.gather(first_tab.close(), second_tab.close())
