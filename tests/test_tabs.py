"""Events for one browser tab: `UIManager.for_user(u, client=<tab>)` reaches that tab's
connections only, on whichever edge, while the tab is connected; when it is not, every
connection of the user. The choice is made once, when the event is appended, so a tab that
resumes with `since` gets what was addressed to it and the other tabs never do."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.close_codes import CloseCode
from realtime import PublishOptions, Recipient, UIManager
from realtime.broker import log_calls
from realtime.broker.log_calls import Retention
from tests.harness import Client, Edge, eventually, id_of, unique
from tests.sse_client import SseClient

pytestmark = pytest.mark.anyio


async def tab(edge: Edge, token: str, client: str, since: str | None = None) -> Client:
    return await Client.connect(edge.ws_url, token, since=since, query={"client": client})


async def test_an_event_for_one_tab_reaches_that_tab_only_on_any_edge(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    first, second = edge_factory(), edge_factory()
    user = unique("u")
    paying = await tab(first, token(user), "tab-paying")
    other = await tab(second, token(user), "tab-other")
    also_paying = await tab(second, token(user), "tab-paying")  # the same tab, another socket
    untagged = await Client.connect(first.ws_url, token(user))  # a client that names no tab

    redirect = UIManager.for_user(user, client="tab-paying").redirect("/orders?status=success")
    toast = UIManager.for_user(user).show_toast("Paid", "Order #1 is paid", "success")
    assert [id_of(f) for f in await paying.events(2)] == [redirect, toast]
    assert [id_of(f) for f in await also_paying.events(2)] == [redirect, toast]
    assert [id_of(f) for f in await other.events(1)] == [toast]
    assert [id_of(f) for f in await untagged.events(1)] == [toast]
    for client in (paying, other, also_paying, untagged):
        assert await client.silent_for(0.2)
        await client.close()


async def test_an_event_for_a_tab_that_is_gone_reaches_every_tab_of_the_user(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    first, second = edge_factory(), edge_factory()
    user = unique("u")
    closing = await tab(first, token(user), "tab-a")
    staying = await tab(second, token(user), "tab-b")
    ui = UIManager.for_user(user)
    await closing.close()
    await eventually(lambda: ui.connections() == 1)  # tab-a's count goes in the same write

    modal = UIManager.for_user(user, client="tab-a").show_modal("payment_failed", {"n": 1})
    assert [id_of(f) for f in await staying.events(1)] == [modal]
    # tab-a comes back (a reload) and resumes: the event went to every tab, tab-a included.
    back = await tab(first, token(user), "tab-a", since=closing.cursor)
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == [modal]
    for client in (staying, back):
        await client.close()


async def test_a_tab_that_resumes_gets_what_was_for_it_and_other_tabs_never_do(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    first, second = edge_factory(), edge_factory()
    user = unique("u")
    mine = await tab(first, token(user), "tab-a")
    theirs = await tab(second, token(user), "tab-b")
    start_mine, start_theirs = mine.cursor, theirs.cursor
    for_a = UIManager.for_user(user, client="tab-a").redirect("/orders/1")
    for_b = UIManager.for_user(user, client="tab-b").redirect("/orders/2")
    everyone = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await mine.events(2)] == [for_a, everyone]
    assert [id_of(f) for f in await theirs.events(2)] == [for_b, everyone]

    # Both reload (resume from before the three): each replay filters as live delivery did.
    again_mine = await tab(second, token(user), "tab-a", since=start_mine)
    again_theirs = await tab(first, token(user), "tab-b", since=start_theirs)
    replayed = [id_of(f) for f in again_mine.frames if f["type"].startswith("ui_")]
    assert replayed == [for_a, everyone]
    replayed = [id_of(f) for f in again_theirs.frames if f["type"].startswith("ui_")]
    assert replayed == [for_b, everyone]
    for client in (mine, theirs, again_mine, again_theirs):
        await client.close()


async def test_a_tab_on_server_sent_events_is_a_tab_like_any_other(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    first, second = edge_factory(), edge_factory()
    user = unique("u")
    streaming = await SseClient.connect(first.http_url, jwt=token(user), query={"client": "tab-s"})
    socket = await tab(second, token(user), "tab-w")
    for_stream = UIManager.for_user(user, client="tab-s").redirect("/orders/1")
    for_socket = UIManager.for_user(user, client="tab-w").show_modal("payment_failed", {})
    assert [id_of(f) for f in await streaming.events(1)] == [for_stream]
    assert [id_of(f) for f in await socket.events(1)] == [for_socket]
    await streaming.close()
    await eventually(lambda: UIManager.for_user(user).connections() == 1)
    fallback = UIManager.for_user(user, client="tab-s").redirect("/orders/2")
    assert [id_of(f) for f in await socket.events(1)] == [fallback]
    await socket.close()


@pytest.mark.parametrize("client", ["", "has space", "a:b", "x" * 65, "é", "tab\n"])
async def test_a_malformed_tab_id_is_refused_with_4400(
    edge: Edge, token: Callable[..., str], client: str
) -> None:
    refused = await Client.connect(
        edge.ws_url, token(unique("u")), query={"client": client}, wait_ready=False
    )
    assert await refused.closed_with() == CloseCode.MALFORMED


def test_only_a_users_events_can_be_for_one_tab_and_a_tab_id_is_checked() -> None:
    with pytest.raises(ValueError, match="tab id"):
        UIManager.for_user("42", client="no spaces please")
    with pytest.raises(ValueError, match="tab id"):
        PublishOptions(client="a:b")
    retention = Retention(max_len=10, max_age_seconds=60)
    for recipient in (Recipient.business("b1"), Recipient.everyone()):
        with pytest.raises(ValueError, match="user's tabs"):
            log_calls.append(
                recipient, '{"type":"ui_refresh"}', 1, PublishOptions(client="t"), retention
            )
