"""Server-Sent Events on a real Redis Cluster (3 masters, 3 replicas), edges given different
masters: a ticket bought on one edge opens a stream on the other, once, whichever shard holds
its user's slot; streams get their events from the open and resume on the other edge; and a
stream and a socket of one user get each event once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from realtime import Recipient
from realtime.frames import SSE_PATH
from realtime.recipients import Recipient as Addressee
from tests.harness import Client, Edge, id_of, unique
from tests.local_cluster import LocalCluster, slot_of
from tests.sse_client import SseClient, ticket_for
from tests.test_cluster import publisher

pytestmark = pytest.mark.anyio


async def test_tickets_are_spent_once_across_edges_whatever_shard_holds_the_user(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    users = [unique("u") for _ in range(24)]
    masters = [node for node in redis_cluster.topology() if node.is_master]
    slots = [slot_of(Addressee.user(user).ticket_key("x")) for user in users]
    assert slots == [slot_of(Addressee.user(user).live_channel) for user in users]
    owners = {i for slot in slots for i, master in enumerate(masters) if master.owns(slot)}
    assert len(owners) == len(masters), "the users' tickets spread over every shard"
    for n, user in enumerate(users):
        bought_on, opened_on = cluster_edges if n % 2 else cluster_edges[::-1]
        ticket = await ticket_for(bought_on.http_url, token(user))
        stream = await SseClient.connect(opened_on.http_url, ticket=ticket)
        async with httpx.AsyncClient(timeout=10) as http:
            replay = await http.get(bought_on.http_url + SSE_PATH, params={"ticket": ticket})
        assert replay.status_code == 401
        await stream.close()


async def test_streams_get_events_from_the_open_and_resume_on_the_other_edge(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    make = publisher(redis_cluster)
    for round_ in range(10):
        user, business = unique("u"), unique("b")
        jwt = token(user, business)
        first_edge, second_edge = cluster_edges if round_ % 2 else cluster_edges[::-1]
        stream = await SseClient.connect(first_edge.http_url, jwt=jwt, wait_ready=False)
        socket = await Client.connect(second_edge.ws_url, jwt)
        opened = make(Recipient.business(business)).show_toast("Hi", f"round {round_}", "info")
        assert [id_of(f) for f in await stream.events(1)] == [opened]
        assert [id_of(f) for f in await socket.events(1)] == [opened]
        await stream.close()
        missed = [make(Recipient.user(user)).update_ui({"n": n}) for n in range(3)]
        resumed = await SseClient.connect(
            second_edge.http_url, jwt=jwt, last_event_id=stream.last_id, wait_ready=False
        )
        assert [id_of(f) for f in await resumed.events(3)] == missed
        assert [id_of(f) for f in await socket.events(3)] == missed
        await asyncio.gather(resumed.close(), socket.close())
