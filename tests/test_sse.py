"""Server-Sent Events give the WebSocket's guarantees (docs/sse.md), tested against two real
edges and a real Redis with the Python SSE client (`tests.sse_client`): from the open, resume
(`Last-Event-ID` or `since`), once, in order, the cap, revocation, expiry, isolation between
users on either transport, and every refusal an HTTP status with a JSON body."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.local_redis import LocalRedis
from realtime import UIManager
from realtime.frames import SSE_PATH, TICKETS_PATH
from tests.harness import Client, Edge, id_of, start_edge, unique
from tests.sse_client import SseClient, ticket_for

pytestmark = pytest.mark.anyio

ROUNDS = 30  # as many connect-then-publish rounds as the WebSocket's (tests/test_connect_race.py)
CAP = 2


@pytest.fixture(scope="module")
def two_edges(redis_server: LocalRedis, artifacts: Path) -> Iterator[tuple[Edge, Edge]]:
    """Edges of their own, with a small cap and short tickets."""
    env = {"WS_MAX_CONNECTIONS_PER_USER": str(CAP), "SSE_TICKET_SECONDS": "2"}
    edges = (
        start_edge(redis_server.url, artifacts, **env),
        start_edge(redis_server.url, artifacts, **env),
    )
    yield edges
    for edge in edges:
        edge.stop()


async def ui_ids_until(client: Client | SseClient, marker: str) -> list[str]:
    await client.until(lambda frame: frame["type"].startswith("ui_") and id_of(frame) == marker)
    return [id_of(frame) for frame in client.frames if frame["type"].startswith("ui_")]


def refusal_of(answer: httpx.Response) -> dict[str, Any]:
    """The JSON body of a refusal, checked to be one."""
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    body: dict[str, Any] = answer.json()
    assert body["detail"], body
    return body


async def get(url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url, **options)


@pytest.mark.parametrize("addressing", ["user", "business", "everyone"])
async def test_events_published_the_moment_a_stream_opens_arrive_once_in_order(
    two_edges: tuple[Edge, Edge], token: Callable[..., str], addressing: str
) -> None:
    for round_ in range(ROUNDS):
        user, business = unique("u"), unique("b")
        ui = {
            "user": UIManager.for_user(user),
            "business": UIManager.for_business(business),
            "everyone": UIManager.broadcast(),
        }[addressing]
        edge = two_edges[round_ % 2]
        client = await SseClient.connect(edge.http_url, jwt=token(user, business), wait_ready=False)
        first = ui.show_toast("Welcome", f"round {round_}", "info")
        second = ui.refresh()
        await client.until(lambda frame: frame["type"] == "insight_ready")
        marker = ui.update_ui({"round": round_})
        assert await ui_ids_until(client, marker) == [first, second, marker], (
            f"round {round_}, addressed to {addressing}: {client.frames}"
        )
        await client.close()


async def test_a_stream_on_one_edge_and_a_socket_on_the_other_get_each_event_once(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    """Each round the user's WebSocket is live on one edge and a stream opens on the other
    (which has no subscription for the user yet), and an event is published at once."""
    for round_ in range(ROUNDS):
        user = unique("u")
        ws_edge, sse_edge = two_edges if round_ % 2 == 0 else two_edges[::-1]
        socket = await Client.connect(ws_edge.ws_url, token(user))
        stream = await SseClient.connect(sse_edge.http_url, jwt=token(user), wait_ready=False)
        ui = UIManager.for_user(user)
        published = ui.show_toast("Order created", f"round {round_}", "success")
        await stream.until(lambda frame: frame["type"] == "insight_ready")
        marker = ui.refresh()
        received = await asyncio.gather(ui_ids_until(socket, marker), ui_ids_until(stream, marker))
        assert list(received) == [[published, marker]] * 2, f"round {round_}"
        await asyncio.gather(socket.close(), stream.close())


@pytest.mark.parametrize("how", ["Last-Event-ID", "since"])
async def test_a_stream_resumed_after_a_drop_gets_what_it_missed_in_order_then_live(
    two_edges: tuple[Edge, Edge], token: Callable[..., str], how: str
) -> None:
    user, business = unique("u"), unique("b")
    ui, team = UIManager.for_user(user), UIManager.for_business(business)
    first = await SseClient.connect(two_edges[0].http_url, jwt=token(user, business))
    before = [ui.show_toast("one", "", "info"), team.refresh()]
    assert [id_of(f) for f in await first.events(2)] == before
    last_seen = first.last_id
    assert last_seen == first.cursor
    await first.close()
    missed = [ui.update_ui({"n": n}) if n % 2 else team.update_ui({"n": n}) for n in range(6)]
    by_header = how == "Last-Event-ID"
    second = await SseClient.connect(
        two_edges[1].http_url,
        jwt=token(user, business),
        wait_ready=False,
        last_event_id=last_seen if by_header else None,
        since=None if by_header else last_seen,
    )
    marker = ui.refresh()
    assert await ui_ids_until(second, marker) == [*missed, marker]
    if not any(f["type"] == "insight_ready" for f in second.frames):
        await second.until(lambda frame: frame["type"] == "insight_ready")
    await second.close()


async def test_sse_and_websocket_users_on_two_edges_get_exactly_their_own_events(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    """Sixteen users of four businesses, half on SSE and half on WebSockets, spread over both
    edges; every user and business gets events: 0 lost, misrouted or duplicated."""
    users = [(unique("u"), f"b{n % 4}-{unique('x')}") for n in range(16)]
    businesses = sorted({b for _, b in users})
    users = [(u, businesses[n % len(businesses)]) for n, (u, _) in enumerate(users)]
    clients: list[Client | SseClient] = []
    for n, (user, business) in enumerate(users):
        edge = two_edges[n % 2]
        if n % 4 < 2:
            clients.append(await SseClient.connect(edge.http_url, jwt=token(user, business)))
        else:
            clients.append(await Client.connect(edge.ws_url, token(user, business)))
    expected: dict[str, list[str]] = {user: [] for user, _ in users}
    for rep in range(3):
        for user, _ in users:
            expected[user].append(UIManager.for_user(user).update_ui({"to": user, "rep": rep}))
        for business in businesses:
            sent = UIManager.for_business(business).update_ui({"to": business, "rep": rep})
            for user, hers in users:
                if hers == business:
                    expected[user].append(sent)
    markers = {user: UIManager.for_user(user).refresh() for user, _ in users}
    for (user, _), client in zip(users, clients, strict=True):
        received = await ui_ids_until(client, markers[user])
        assert sorted(received) == sorted([*expected[user], markers[user]]), user
        assert len(received) == len(set(received)), f"{user} got a duplicate"
        await client.close()


async def test_the_cap_counts_streams_and_sockets_alike_and_a_closed_stream_frees_its_slot(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    socket = await Client.connect(two_edges[0].ws_url, token(user))
    stream = await SseClient.connect(two_edges[1].http_url, jwt=token(user))
    ticket = await ticket_for(two_edges[0].http_url, token(user))
    answer = await get(two_edges[0].http_url + SSE_PATH, params={"ticket": ticket})
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) > 0
    assert "too many" in refusal_of(answer)["detail"]
    refused_socket = await Client.connect(two_edges[1].ws_url, token(user), wait_ready=False)
    assert await refused_socket.closed_with() == 4429
    await stream.close()
    again = await SseClient.connect(two_edges[0].http_url, jwt=token(user))  # the slot is free
    await asyncio.gather(again.close(), socket.close())


async def test_a_disconnected_user_s_stream_ends_with_4401_revoked_and_older_tokens_are_refused(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    old = token(user)
    stream = await SseClient.connect(two_edges[0].http_url, jwt=old)
    other = await SseClient.connect(two_edges[1].http_url, jwt=old)
    ticket = await ticket_for(two_edges[0].http_url, old)  # bought before the revocation
    UIManager.for_user(user).disconnect()
    assert await stream.closed_with() == (4401, "revoked")
    assert await other.closed_with() == (4401, "revoked")
    # The old token buys no ticket now (a 401 a page's fetch can read: it asks for a new
    # token), and a ticket it bought before opens no stream.
    async with httpx.AsyncClient(timeout=10) as http:
        bought = await http.post(
            two_edges[1].http_url + TICKETS_PATH, headers={"Authorization": f"Bearer {old}"}
        )
    assert bought.status_code == 401
    assert refusal_of(bought)["detail"] == "token revoked"
    answer = await get(two_edges[1].http_url + SSE_PATH, params={"ticket": ticket})
    assert answer.status_code == 401
    assert refusal_of(answer)["detail"] == "revoked"
    bearer = {"Authorization": f"Bearer {old}"}
    assert (await get(two_edges[0].http_url + SSE_PATH, headers=bearer)).status_code == 401
    await asyncio.gather(stream.close(), other.close())


async def test_a_stream_ends_when_its_token_expires_with_4401(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    stream = await SseClient.connect(two_edges[0].http_url, jwt=token(unique("u"), ttl=1))
    assert (await stream.closed_with(timeout=15))[0] == 4401  # exp plus the 5 s leeway
    await stream.close()


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({}, {"Last-Event-ID": "garbage"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "u1.2-3_u1.2-4"}, "Last-Event-ID"),
        ({}, {"Last-Event-ID": "u" + "1" * 2000}, "Last-Event-ID"),
        ({"since": "nope"}, {}, "since"),
        ({"since": "u1.1-1\x01"}, {}, "since"),
        ({"channel": ["ui_events", "ui_events"]}, {}, "channel"),
        ({"client": "no spaces allowed"}, {}, "client"),
        ({"token": "a.b.c"}, {}, "token"),
    ],
)
async def test_malformed_requests_get_400_json_naming_the_field_and_spend_no_ticket(
    two_edges: tuple[Edge, Edge],
    token: Callable[..., str],
    params: dict[str, Any],
    headers: dict[str, str],
    field: str,
) -> None:
    edge = two_edges[0]
    ticket = await ticket_for(edge.http_url, token(unique("u")))
    answer = await get(
        edge.http_url + SSE_PATH, params={**params, "ticket": ticket}, headers=headers
    )
    assert answer.status_code == 400, answer.text
    assert refusal_of(answer)["field"] == field
    stream = await SseClient.connect(edge.http_url, ticket=ticket)  # still good for one stream
    await stream.close()


async def test_a_ticket_opens_one_stream_on_any_edge_and_a_replay_gets_401(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    ticket = await ticket_for(two_edges[0].http_url, token(user))
    stream = await SseClient.connect(two_edges[1].http_url, ticket=ticket)  # bought on the other
    for edge in two_edges:
        answer = await get(edge.http_url + SSE_PATH, params={"ticket": ticket})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert refusal_of(answer)["field"] == "ticket"
    await stream.close()


async def test_tickets_opened_at_once_on_both_edges_open_exactly_one_stream(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    for _ in range(10):
        ticket = await ticket_for(two_edges[0].http_url, token(unique("u")))
        attempts = [
            get(edge.http_url + SSE_PATH, params={"ticket": ticket}, timeout=httpx.Timeout(2))
            for edge in itertools.islice(itertools.cycle(two_edges), 6)
        ]
        outcomes = await asyncio.gather(*attempts, return_exceptions=True)
        # An opened stream never ends by itself: its GET times out reading the body.
        opened = [o for o in outcomes if isinstance(o, httpx.ReadTimeout)]
        refused = [o for o in outcomes if isinstance(o, httpx.Response)]
        assert len(opened) == 1, outcomes
        assert [r.status_code for r in refused] == [401] * 5


@pytest.mark.parametrize(
    "forge",
    [
        lambda ticket, other: ticket.split(".")[0] + "." + other.split(".")[1],  # another user's
        lambda ticket, other: ("A" * 32) + "." + ticket.split(".")[1],  # a guessed secret
        lambda ticket, other: ticket + "x",
        lambda ticket, other: ticket[:-1],
        lambda ticket, other: "not-a-ticket",
        lambda ticket, other: "é" * 40,
    ],
)
async def test_a_forged_ticket_gets_401_and_spends_nothing(
    two_edges: tuple[Edge, Edge], token: Callable[..., str], forge: Callable[[str, str], str]
) -> None:
    edge = two_edges[0]
    ticket = await ticket_for(edge.http_url, token(unique("u")))
    other = await ticket_for(edge.http_url, token(unique("v")))
    answer = await get(edge.http_url + SSE_PATH, params={"ticket": forge(ticket, other)})
    assert answer.status_code == 401
    assert refusal_of(answer)["field"] == "ticket"
    for good in (ticket, other):
        stream = await SseClient.connect(edge.http_url, ticket=good)
        await stream.close()


async def test_a_ticket_expires_after_its_lifetime(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    edge = two_edges[0]
    answer = await httpx.AsyncClient().post(
        edge.http_url + TICKETS_PATH, headers={"Authorization": f"Bearer {token(unique('u'))}"}
    )
    assert answer.json()["expires_in"] == 2
    await asyncio.sleep(2.5)  # the ticket's lifetime itself is what is tested
    refused = await get(edge.http_url + SSE_PATH, params={"ticket": answer.json()["ticket"]})
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
)
async def test_tickets_and_streams_without_a_valid_token_get_401_json(
    two_edges: tuple[Edge, Edge], headers: dict[str, str]
) -> None:
    edge = two_edges[0]
    async with httpx.AsyncClient(timeout=10) as http:
        bought = await http.post(edge.http_url + TICKETS_PATH, headers=headers)
        opened = await http.get(edge.http_url + SSE_PATH, headers=headers)
        wrong_method = await http.get(edge.http_url + TICKETS_PATH)
    for answer in (bought, opened):
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        refusal_of(answer)
    assert wrong_method.status_code == 405


async def test_a_bearer_header_opens_a_stream_without_a_ticket(
    two_edges: tuple[Edge, Edge], token: Callable[..., str]
) -> None:
    user = unique("u")
    headers = {"Authorization": f"Bearer {token(user)}"}
    stream = await SseClient.connect(two_edges[0].http_url, headers=headers)
    assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert stream.response.headers["x-accel-buffering"] == "no"
    sent = UIManager.for_user(user).show_toast("Hi", "there", "success")
    assert id_of((await stream.events(1))[0]) == sent
    await stream.close()


async def test_an_origin_not_allowed_gets_403_and_an_allowed_one_gets_cors_headers(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    edge = edge_factory(ALLOWED_ORIGINS="http://app.example")
    headers = {"Authorization": f"Bearer {token(unique('u'))}"}
    denied = await get(edge.http_url + SSE_PATH, headers={**headers, "Origin": "http://evil"})
    assert denied.status_code == 403
    refusal_of(denied)
    stream = await SseClient.connect(
        edge.http_url, headers={**headers, "Origin": "http://app.example"}
    )
    assert stream.response.headers["access-control-allow-origin"] == "http://app.example"
    await stream.close()
