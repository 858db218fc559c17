"""Presence across edges: every edge's connections counted per user and per business, an
edge killed with kill -9 dropping out within PRESENCE_TTL_SECONDS while live edges keep theirs
with heartbeats, an edge that stops giving its entries up at once, deliver-or-fall-back, and
the same on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.local_redis import LocalRedis
from realtime import AsyncUIManager, Recipient, UIManager, presence
from realtime.broker.presence_scripts import PUT, READ
from realtime.broker.topology import sync_client
from realtime.eventlog import EventLog, Retention
from realtime.publisher import Delivery, default_event_log
from tests.cluster_fixtures import start_cluster_edges
from tests.harness import Client, Edge, eventually, id_of, unique
from tests.local_cluster import LocalCluster

pytestmark = pytest.mark.anyio

TTL = 3.0  # PRESENCE_TTL_SECONDS of the edges that are killed: heartbeats every second


def members(business: str, log: EventLog | None = None) -> dict[str, int]:
    return presence.members((log or default_event_log()).driver, Recipient.business(business))


async def test_presence_counts_every_socket_of_a_user_on_every_edge(
    edge: Edge, edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    other = edge_factory()
    user, colleague, business = unique("u"), unique("u"), unique("b")
    ui = UIManager.for_user(user)
    assert (ui.connections(), ui.is_online()) == (0, False)
    first = await Client.connect(edge.ws_url, token(user, business))
    # A user's entry is written before the socket is ready: no wait needed.
    assert (ui.connections(), ui.is_online()) == (1, True)
    second = await Client.connect(edge.ws_url, token(user, business))
    third = await Client.connect(other.ws_url, token(user, business))
    theirs = await Client.connect(other.ws_url, token(colleague, business))
    assert ui.connections() == 3
    assert UIManager.for_user(colleague).connections() == 1
    await eventually(lambda: members(business) == {user: 3, colleague: 1})
    assert UIManager.for_business(business).connections() == 4

    await second.close()
    await eventually(lambda: ui.connections() == 2)
    await eventually(lambda: members(business) == {user: 2, colleague: 1})
    await theirs.close()
    await eventually(lambda: members(business) == {user: 2})
    for client in (first, third):
        await client.close()
    await eventually(lambda: not ui.is_online() and members(business) == {})


async def test_the_async_twin_reads_the_same_presence(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    ui = AsyncUIManager.for_user(user)
    assert (await ui.connections(), await ui.is_online()) == (1, True)
    await client.close()
    await eventually(lambda: UIManager.for_user(user).connections() == 0)
    assert await ui.is_online() is False


async def test_an_edge_killed_with_kill_9_leaves_presence_within_the_ttl_and_live_ones_stay(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    doomed = edge_factory(PRESENCE_TTL_SECONDS=str(TTL))
    survivor = edge_factory(PRESENCE_TTL_SECONDS=str(TTL))
    user, business = unique("u"), unique("b")
    ui = UIManager.for_user(user)
    on_doomed = [await Client.connect(doomed.ws_url, token(user, business)) for _ in range(2)]
    on_survivor = await Client.connect(survivor.ws_url, token(user, business))
    await eventually(lambda: members(business) == {user: 3})

    assert doomed.process is not None
    doomed.process.kill()  # SIGKILL: no goodbye, its entries must expire
    doomed.process.wait(10)
    killed = time.monotonic()
    assert ui.connections() == 3  # nobody retracted them: they expire
    await eventually(lambda: ui.connections() == 1, timeout=TTL + 2)
    gone_after = time.monotonic() - killed
    assert gone_after <= TTL + 0.5, gone_after
    await eventually(lambda: members(business) == {user: 1}, timeout=2)

    # The survivor's entries outlive several TTLs: its heartbeat rewrites them.
    await asyncio.sleep(max(0.0, 2 * TTL - (time.monotonic() - killed)))
    assert ui.connections() == 1
    assert members(business) == {user: 1}

    # The users of the dead edge come back as they reconnect elsewhere.
    for client in on_doomed:
        await client.close()
    back = await Client.connect(survivor.ws_url, token(user, business))
    assert ui.connections() == 2
    await eventually(lambda: members(business) == {user: 2})
    for client in (on_survivor, back):
        await client.close()


async def test_an_edge_that_stops_gives_its_entries_up_at_once(
    edge_factory: Callable[..., Edge], token: Callable[..., str]
) -> None:
    # The default PRESENCE_TTL_SECONDS, 30 s; no drain: the socket closes at the SIGTERM.
    stopping = edge_factory(WS_SHUTDOWN_DRAIN_SECONDS="0")
    user, business = unique("u"), unique("b")
    client = await Client.connect(stopping.ws_url, token(user, business))
    await eventually(lambda: members(business) == {user: 1})
    started = time.monotonic()
    stopping.terminate()
    await eventually(lambda: UIManager.for_user(user).connections() == 0, timeout=10)
    await eventually(lambda: members(business) == {}, timeout=2)
    assert time.monotonic() - started < 10  # far less than the 30 s TTL
    await client.close()


async def test_deliver_tells_whether_anyone_got_the_event_live_and_falls_back_if_not(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    fallbacks: list[str] = []
    ui = UIManager.for_user(user)
    from realtime.events import Toast

    toast = Toast(title="Shipped", description="Order 17 is on its way", variant="info")
    offline = ui.deliver(toast, if_offline=lambda: fallbacks.append("email"))
    assert isinstance(offline, Delivery)
    assert (offline.live, fallbacks) == (False, ["email"])

    client = await Client.connect(edge.ws_url, token(user))
    online = ui.deliver(toast, if_offline=lambda: fallbacks.append("email"))
    assert (online.live, fallbacks) == (True, ["email"])
    [frame] = await client.events(1)
    assert id_of(frame) == online.id
    assert ui.deliver(toast).live  # without a fallback: the answer alone
    await client.events(1)

    sent: list[str] = []

    async def email() -> None:
        sent.append("email")

    twin = AsyncUIManager.for_user(user)
    assert (await twin.deliver(toast, if_offline=email)).live
    await client.close()
    await eventually(lambda: not ui.is_online())
    assert not (await twin.deliver(toast, if_offline=email)).live
    assert sent == ["email"]


@pytest.mark.usefixtures("redis_server")  # the process's default log connects first
def test_presence_is_per_user_and_per_business_not_for_everyone() -> None:
    with pytest.raises(ValueError, match="per user and per business"):
        UIManager.broadcast().connections()
    with pytest.raises(ValueError, match="only a user"):
        UIManager.for_business("b1").disconnect()


def test_the_presence_scripts_stay_in_one_slot() -> None:
    assert PUT.text.startswith("#!lua\n")
    assert READ.text.startswith("#!lua flags=no-writes\n")
    assert "allow-cross-slot-keys" not in PUT.text + READ.text


# -- on a real Redis Cluster ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_edges(
    redis_cluster: LocalCluster, redis_server: LocalRedis, artifacts: Path
) -> Iterator[tuple[Edge, Edge]]:
    """Two edges, each given a different master as EVENTS_REDIS_URL, heartbeating often."""
    edges = start_cluster_edges(
        redis_cluster, redis_server.url, artifacts, PRESENCE_TTL_SECONDS=str(TTL)
    )
    yield edges
    for edge in edges:
        edge.stop()


async def test_presence_across_edges_on_a_cluster(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    client = sync_client(redis_cluster.url)
    log = EventLog(client, Retention(1000, 3600))
    business = unique("b")
    users = [unique("u") for _ in range(12)]  # spread over the masters' slots
    sockets = [
        await Client.connect(cluster_edges[n % 2].ws_url, token(user, business))
        for n, user in enumerate(users)
        for _ in range(1 + n % 2)
    ]
    for n, user in enumerate(users):
        assert UIManager(Recipient.user(user), log).connections() == 1 + n % 2
    expected = {user: 1 + n % 2 for n, user in enumerate(users)}
    await eventually(lambda: members(business, log) == expected)
    # Still there after two TTLs: the heartbeats reach every master, even masters that
    # forgot the heartbeat's script (a failover promotes a replica without it).
    for port in redis_cluster.masters():
        node = redis_cluster.node(port).client()
        node.script_flush()
        node.close()
    await asyncio.sleep(2 * TTL)
    assert members(business, log) == expected
    for socket in sockets:
        await socket.close()
    await eventually(lambda: members(business, log) == {})
    assert all(not UIManager(Recipient.user(user), log).is_online() for user in users)
    client.close()


async def test_a_burst_of_connects_on_a_cluster_is_admitted_and_counted(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    """300 sockets at once on two edges: every connect's presence script (on top of its
    replays) stays within the cluster client's connections per node."""
    client = sync_client(redis_cluster.url)
    log = EventLog(client, Retention(1000, 3600))
    users = [unique("burst") for _ in range(100)]
    sockets = await asyncio.gather(
        *(Client.connect(cluster_edges[n % 2].ws_url, token(users[n % 100])) for n in range(300))
    )
    assert all(UIManager(Recipient.user(user), log).connections() == 3 for user in users)
    await asyncio.gather(*(socket.close() for socket in sockets))
    await eventually(
        lambda: all(not UIManager(Recipient.user(user), log).is_online() for user in users)
    )
    client.close()
