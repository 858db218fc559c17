"""Ids as identity providers issue them (`urn:user:42`, `auth0|5f3c`, a space, 256 characters,
any script, hash-tag braces, URL characters) work everywhere, against real processes: a
socket gets what UIManager and the HTTP publish API send it, presence counts it (over the
server API), and a disconnect closes it and refuses its tokens. Ids that an encoding of key
names could merge (case, `:` and its escape, `%`, braces, Unicode forms) never share a key.
Anything else is refused at verification, 4401 at the edge and 401 at the API, never later."""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from edge.close_codes import CloseCode
from realtime import Recipient, UIManager, presence
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog, Retention
from tests.awkward_ids import BAD_IDS, SHAPES, awkward, in_path, signed
from tests.harness import Client, Edge, ServerProcess, closed, eventually, id_of, without_id
from tests.local_cluster import LocalCluster
from tests.stack import SERVER_KEY, call

pytestmark = pytest.mark.anyio


def publish_over_http(api: ServerProcess, to: dict[str, str]) -> str:
    response = httpx.post(
        f"{api.http_url}/api/v1/publish",
        json={"to": to, "event": {"type": "ui_refresh"}},
        headers={"Authorization": f"Bearer {SERVER_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    event_id: str = response.json()["id"]
    return event_id


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_socket_gets_what_is_published_to_its_user_and_business(
    shape: str, edge: Edge, api: ServerProcess, token: Callable[..., str]
) -> None:
    user, business = awkward(shape)
    client = await Client.connect(edge.ws_url, token(user, business))
    published = [
        UIManager.for_user(user).refresh(),
        UIManager.for_business(business).refresh(),
        publish_over_http(api, {"user": user}),
        publish_over_http(api, {"business": business}),
    ]
    assert [id_of(frame) for frame in await client.events(4)] == published
    await client.close()


@pytest.mark.parametrize("shape", SHAPES)
async def test_presence_counts_it_and_a_disconnect_closes_it_and_refuses_its_tokens(
    shape: str, edge: Edge, api: ServerProcess, token: Callable[..., str]
) -> None:
    user, business = awkward(shape)
    old = token(user, business)
    client = await Client.connect(edge.ws_url, old)
    answer = call(api, "GET", f"/presence/users/{in_path(user)}", SERVER_KEY)
    assert answer.json() == {"user_id": user, "online": True, "connections": 1}
    members = {"business_id": business, "users": [{"user_id": user, "connections": 1}]}
    path = f"/presence/businesses/{in_path(business)}"
    # A business's entry follows the connect by a round trip.
    await eventually(lambda: call(api, "GET", path, SERVER_KEY).json() == members)

    answer = call(api, "POST", f"/users/{in_path(user)}/disconnect", SERVER_KEY)
    assert answer.status_code == 200, answer.text
    assert answer.json()["user_id"] == user
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "revoked")
    again = await Client.connect(edge.ws_url, old, wait_ready=False)
    assert await closed(again) == (CloseCode.UNAUTHORIZED, "revoked")
    assert call(api, "GET", "/orders", old).status_code == 401


async def test_every_shape_works_on_a_cluster(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    """Each recipient's keys stay in one hash slot (a script touching them would otherwise be
    refused with CROSSSLOT), whatever braces or colons its id holds."""
    log = EventLog(sync_client(redis_cluster.url), Retention(1000, 3600))
    for shape in SHAPES:
        await publish_count_and_disconnect(cluster_edges, log, token, *awkward(shape))
    log.client.close()


async def publish_count_and_disconnect(
    edges: tuple[Edge, Edge], log: EventLog, token: Callable[..., str], user: str, business: str
) -> None:
    ui, team = UIManager(Recipient.user(user), log), Recipient.business(business)
    sockets = [await Client.connect(edge.ws_url, token(user, business)) for edge in edges]
    published = [ui.refresh(), UIManager(team, log).refresh()]
    for client in sockets:
        # Once each. Live events are in order within each log; on a cluster the user's and
        # the business's live channels are on different masters, so the two may arrive
        # either way round (as tests/test_cluster.py states the guarantee).
        assert sorted(id_of(frame) for frame in await client.events(2)) == sorted(published)
    assert ui.connections() == 2
    await eventually(lambda: presence.members(log.driver, team) == {user: 2})
    ui.disconnect()
    for client in sockets:
        assert await closed(client) == (CloseCode.UNAUTHORIZED, "revoked")


def merge_prone_ids() -> list[str]:
    """Distinct ids that a careless encoding of key names would give the same key."""
    tag = uuid.uuid4().hex[:10]
    e_acute = f"caf\u00e9 {tag}"  # NFC: é is one code point
    return [
        f"Ab{tag}", f"ab{tag}",
        f"a:{tag}", f"a%3A{tag}", f"a%3a{tag}", f"a_3A{tag}",
        f"a%{tag}", f"a%25{tag}",
        f"{{{tag}}}", f"%7B{tag}%7D", f"{tag}",
        e_acute, unicodedata.normalize("NFD", e_acute),
        f"a b{tag}", f"a+b{tag}", f"a%20b{tag}",
    ]  # fmt: skip


async def test_ids_an_encoding_could_merge_each_get_only_their_own_events(
    edge: Edge, token: Callable[..., str]
) -> None:
    users = merge_prone_ids()
    assert len(set(users)) == len(users)
    clients = [await Client.connect(edge.ws_url, token(user)) for user in users]
    for user in users:
        assert UIManager.for_user(user).connections() == 1
    for user in users:
        UIManager.for_user(user).show_toast("own", user, "info")
    for user in users:  # published after every `own`: any leak would arrive before it
        UIManager.for_user(user).show_toast("marker", user, "info")
    for user, client in zip(users, clients, strict=True):
        received = [without_id(frame) for frame in await client.events(2)]
        assert [(f["title"], f["description"]) for f in received] == [
            ("own", user),
            ("marker", user),
        ]
    for client in clients:
        await client.close()


@pytest.mark.parametrize("claim", ["sub", "business_id"])
@pytest.mark.parametrize("bad", BAD_IDS)
async def test_a_token_naming_an_id_nobody_may_have_is_refused_4401_and_401(
    edge: Edge, api: ServerProcess, claim: str, bad: str
) -> None:
    ids: dict[str, Any] = {"sub": "u-ok", "business": None}
    ids["sub" if claim == "sub" else "business"] = BAD_IDS[bad]
    token = signed(ids["sub"], business=ids["business"])
    client = await Client.connect(edge.ws_url, token, wait_ready=False)
    assert await closed(client) == (CloseCode.UNAUTHORIZED, "invalid token")
    answer = call(api, "GET", "/orders", token)
    assert answer.status_code == 401, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"detail": "invalid or expired token"}
    assert answer.headers["www-authenticate"].startswith("Bearer")
