"""Insight on a real Redis Cluster (3 masters, 3 replicas): every guarantee it has on one
node, through the public surface only: edges pointed at different nodes, UIManager
publishing through redis-py's cluster client, clients resuming with `since`."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import redis

from cli.local_redis import LocalRedis
from realtime import AsyncUIManager, NotReplicated, Recipient, UIManager
from realtime.broker.topology import is_cluster, sync_client
from realtime.eventlog import EventLog, Retention
from tests.harness import ROOT, Client, Edge, eventually, id_of, start_edge, unique
from tests.local_cluster import LocalCluster, slot_of

pytestmark = pytest.mark.anyio

RETENTION = Retention(1000, 3600)


def publisher(cluster: LocalCluster, port: int | None = None) -> Callable[[Recipient], UIManager]:
    """UIManagers writing through a cluster client that was given one node's URL."""
    url = cluster.node(port).url if port is not None else cluster.url
    log = EventLog(sync_client(url), RETENTION)
    return lambda recipient: UIManager(recipient, log)


def test_cluster_mode_is_detected_from_any_node(
    redis_cluster: LocalCluster, redis_server: LocalRedis
) -> None:
    assert all(is_cluster(redis_cluster.node(port).url) for port in redis_cluster.ports)
    assert not is_cluster(redis_server.url)


async def test_an_event_reaches_its_user_through_a_cluster(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    make = publisher(redis_cluster)
    user = unique("u")
    client = await Client.connect(cluster_edges[0].ws_url, token(user))
    event_id = make(Recipient.user(user)).show_toast("Hello", "from a cluster", "success")
    [frame] = await client.events(1)
    assert id_of(frame) == event_id
    await client.close()


def test_each_recipients_keys_share_a_slot_and_recipients_spread_over_every_master(
    redis_cluster: LocalCluster,
) -> None:
    make = publisher(redis_cluster)
    users = [unique("spread") for _ in range(60)]
    for user in users:
        make(Recipient.user(user)).refresh()
    for user in users[:5]:
        recipient = Recipient.user(user)
        slots = {
            slot_of(key)
            for key in (recipient.stream_key, recipient.meta_key, recipient.live_channel)
        }
        assert len(slots) == 1
    for port in redis_cluster.masters():
        client = redis_cluster.node(port).client()
        try:
            mine = list(client.scan_iter(match="insight:{user:spread-*", count=1000))
        finally:
            client.close()
        assert mine, f"no Insight keys on master {port}"


def test_a_snapshot_versions_key_is_in_its_recipients_slot_and_drops_a_late_older_one(
    redis_cluster: LocalCluster,
) -> None:
    """The version of a coalesce key lives in the recipient's slot, even for a key with braces
    of its own (a hash tag names the first pair), so the append script may read it."""
    recipient = Recipient.user(unique("u"))
    ui = publisher(redis_cluster)(recipient)
    coalesce_key = "job:{not-a-tag}"
    newest = ui.update_ui({"percent": 100}, coalesce_key=coalesce_key, version=10)
    assert ui.update_ui({"percent": 50}, coalesce_key=coalesce_key, version=5) == newest
    assert slot_of(recipient.version_key(coalesce_key)) == slot_of(recipient.stream_key)
    client = sync_client(redis_cluster.url)
    try:
        assert client.xlen(recipient.stream_key) == 1
    finally:
        client.close()


def test_redis_itself_refuses_an_append_that_touches_another_recipients_slot(
    redis_cluster: LocalCluster,
) -> None:
    from realtime.broker.log_scripts import APPEND

    assert APPEND.text.startswith("#!lua\n")
    assert "allow-cross-slot-keys" not in APPEND.text
    mine, other = Recipient.user(unique("u")), Recipient.user(unique("v"))
    while slot_of(other.stream_key) == slot_of(mine.stream_key):
        other = Recipient.user(unique("v"))
    owner = redis_cluster.node(redis_cluster.master_for_key(mine.stream_key)).client()
    try:
        with pytest.raises(redis.ResponseError, match=r"CROSSSLOT|slot"):
            owner.eval(
                APPEND.text, 3, mine.stream_key, other.meta_key, mine.idempotency_key("k"),
                mine.live_channel, '{"type":"ui_refresh"}', 1_000_000, 10, 3_600_000_000, "",
                60_000, "u", "1", 60_000,
            )  # fmt: skip
    finally:
        owner.close()


async def test_three_hundred_users_on_two_edges_get_exactly_their_events(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    """Random addressing (user, business, everyone) through publishers given different
    nodes: nothing lost, misrouted or duplicated, and each log's events in order."""
    rng = random.Random(1301)
    businesses = [unique("b") for _ in range(6)]
    users = {unique("u"): businesses[n % 6] for n in range(300)}
    names = list(users)
    clients: dict[str, Client] = {}
    semaphore = asyncio.Semaphore(50)

    async def connect(n: int, user: str) -> None:
        async with semaphore:
            edge = cluster_edges[n % 2]
            clients[user] = await Client.connect(edge.ws_url, token(user, users[user]))

    await asyncio.gather(*(connect(n, user) for n, user in enumerate(names)))
    makers = [publisher(redis_cluster, port) for port in redis_cluster.masters()]
    expected: dict[str, list[str]] = {user: [] for user in names}
    for n in range(600):
        make = makers[n % len(makers)]
        roll = rng.random()
        if roll < 0.7:
            user = rng.choice(names)
            expected[user].append(make(Recipient.user(user)).update_ui({"n": n}))
        elif roll < 0.95:
            business = rng.choice(businesses)
            event_id = make(Recipient.business(business)).update_ui({"n": n})
            for user, theirs in users.items():
                if theirs == business:
                    expected[user].append(event_id)
        else:
            event_id = make(Recipient.everyone()).update_ui({"n": n})
            for user in names:
                expected[user].append(event_id)

    async def received(user: str) -> list[str]:
        return [id_of(f) for f in await clients[user].events(len(expected[user]), timeout=30)]

    got = dict(zip(names, await asyncio.gather(*(received(u) for u in names)), strict=True))
    for user in names:
        assert sorted(got[user]) == sorted(expected[user]), user  # none lost, none misrouted
        assert len(set(got[user])) == len(got[user]), user  # none twice
        for kind in "uba":  # each log's events in the order they were published
            assert [i for i in got[user] if i[0] == kind] == [
                i for i in expected[user] if i[0] == kind
            ]
    assert all([await c.silent_for(0.3) for c in list(clients.values())[:10]])
    await asyncio.gather(*(c.close() for c in clients.values()))


async def test_a_client_resumes_on_another_edge_with_since(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    make = publisher(redis_cluster)
    user, business = unique("u"), unique("b")
    client = await Client.connect(cluster_edges[0].ws_url, token(user, business))
    seen = make(Recipient.user(user)).refresh()
    assert [id_of(f) for f in await client.events(1)] == [seen]
    await client.close()
    missed = [
        make(Recipient.user(user)).update_ui({"n": 1}),
        make(Recipient.business(business)).update_ui({"n": 2}),
        make(Recipient.user(user)).redirect("/orders"),
    ]
    back = await Client.connect(cluster_edges[1].ws_url, token(user, business), since=client.cursor)
    replayed = [id_of(f) for f in back.frames if f["type"].startswith("ui_")]
    assert sorted(replayed) == sorted(missed)
    assert [i for i in replayed if i[0] == "u"] == [missed[0], missed[2]]
    assert not any(f["type"] == "insight_gap" for f in back.frames)
    later = make(Recipient.user(user)).refresh()
    assert [id_of(f) for f in await back.events(1)] == [later]
    await back.close()


@pytest.mark.parametrize("addressing", ["user", "business", "everyone"])
async def test_events_published_the_moment_a_socket_opens_arrive_on_a_cluster(
    cluster_edges: tuple[Edge, Edge],
    redis_cluster: LocalCluster,
    token: Callable[..., str],
    addressing: str,
) -> None:
    from tests.test_connect_race import TokenPlace, open_socket, ui_ids_until

    places: tuple[TokenPlace, ...] = ("query", "subprotocol", "first frame")

    make = publisher(redis_cluster)
    for round_ in range(20):
        user, business = unique("u"), unique("b")
        recipient = {
            "user": Recipient.user(user),
            "business": Recipient.business(business),
            "everyone": Recipient.everyone(),
        }[addressing]
        place = places[round_ % 3]
        client = await open_socket(cluster_edges[round_ % 2].ws_url, token(user, business), place)
        first = make(recipient).show_toast("Welcome", f"round {round_}", "info")
        await client.until(lambda frame: frame["type"] == "insight_ready")
        marker = make(recipient).refresh()
        assert await ui_ids_until(client, marker) == [first, marker], f"round {round_}, {place}"
        await client.close()


class Producer:
    """Publishes to random users from a thread, as a Celery task does: each event with an
    idempotency key of its own, retried on Redis errors until it is acknowledged."""

    def __init__(self, cluster: LocalCluster, users: list[str]) -> None:
        self._make = publisher(cluster)
        self._users = users
        self._rng = random.Random(1302)
        self.acked: dict[str, list[str]] = {user: [] for user in users}
        self.failures = 0
        self.error: BaseException | None = None  # what stopped the thread, re-raised on exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as error:  # an assert in a thread only ends the thread
            self.error = error

    def _produce(self) -> None:
        n = 0
        while not self._stop.is_set():
            user = self._rng.choice(self._users)
            deadline = time.monotonic() + 30
            while True:
                try:
                    event_id = self._make(Recipient.user(user)).update_ui(
                        {"n": n}, idempotency_key=f"event-{n}"
                    )
                    break
                except redis.RedisError:
                    self.failures += 1
                    assert time.monotonic() < deadline, "publishing did not resume"
                    time.sleep(0.05)
            self.acked[user].append(event_id)
            n += 1
            time.sleep(0.002)

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the producer did not stop"
        if self.error is not None:
            raise self.error


async def received_or_gap(client: Client, expected: list[str], timeout: float = 30) -> bool:
    """Receive until every expected event arrived (False) or an insight_gap did (True)."""
    missing = set(expected) - {id_of(f) for f in client.frames if f["type"].startswith("ui_")}
    async with asyncio.timeout(timeout):
        while missing:
            frame = await client.recv(timeout)
            if frame["type"] == "insight_gap":
                return True
            if frame["type"].startswith("ui_"):
                missing.discard(id_of(frame))
    return False


@pytest.mark.slow
async def test_a_killed_master_fails_over_and_every_acknowledged_event_arrives_or_is_a_gap(
    fresh_cluster: LocalCluster,
    redis_server: LocalRedis,
    artifacts: Path,
    token: Callable[..., str],
) -> None:
    cluster = fresh_cluster
    victim, *others = cluster.masters()
    edges = [
        start_edge(redis_server.url, artifacts, EVENTS_REDIS_URL=cluster.node(port).url)
        for port in (victim, others[0])  # one edge was even given the node that dies
    ]
    try:
        users = [unique("u") for _ in range(30)]
        on_victim = [
            u for u in users if cluster.master_for_key(Recipient.user(u).live_channel) == victim
        ]
        assert on_victim, "no user on the master to be killed"
        clients = {
            user: await Client.connect(edges[n % 2].ws_url, token(user))
            for n, user in enumerate(users)
        }
        with Producer(cluster, users) as producer:
            await eventually(lambda: sum(map(len, producer.acked.values())) > 50)
            killed_at = time.monotonic()
            cluster.kill_master(victim)
            await asyncio.to_thread(cluster.wait_for_failover, victim)
            failed_over_at = time.monotonic()
            before = {u: len(producer.acked[u]) for u in on_victim}
            await eventually(
                lambda: any(len(producer.acked[u]) > before[u] + 5 for u in on_victim), 30
            )
            flowing_at = time.monotonic()
        gaps = {user: await received_or_gap(clients[user], producer.acked[user]) for user in users}
        for user in users:
            ids = [id_of(f) for f in clients[user].frames if f["type"].startswith("ui_")]
            assert len(ids) == len(set(ids)), f"{user} got an event twice"
            if not gaps[user]:
                assert set(producer.acked[user]) <= set(ids), f"{user} lost an event silently"
        # The surviving masters lost nothing: their users are never told to reload.
        assert [u for u in users if gaps[u] and u not in on_victim] == []
        print(
            f"failover: {failed_over_at - killed_at:.1f} s to a new master, events to its users "
            f"again after {flowing_at - killed_at:.1f} s; {producer.failures} publish retries; "
            f"gaps signalled to {sum(gaps.values())} of {len(users)} users"
        )
        for edge in edges:
            await eventually(partial(edge_ready, edge), 30)
        await asyncio.gather(*(c.close() for c in clients.values()))
    finally:
        for edge in edges:
            edge.stop()


def edge_ready(edge: Edge) -> bool:
    try:
        return httpx.get(f"{edge.http_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
async def test_a_busy_recipients_slot_migrates_while_events_flow_and_nothing_is_lost(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    user = unique("busy")
    slot = slot_of(Recipient.user(user).stream_key)
    source = redis_cluster.master_for_slot(slot)
    target = next(port for port in redis_cluster.masters() if port != source)
    tabs = [await Client.connect(edge.ws_url, token(user)) for edge in cluster_edges]
    arrivals: list[list[float]] = [[], []]

    async def read(n: int) -> None:
        while True:
            frame = await tabs[n].recv(timeout=60)
            if frame["type"].startswith("ui_"):
                arrivals[n].append(time.monotonic())

    readers = [asyncio.create_task(read(n)) for n in range(2)]
    try:
        with Producer(redis_cluster, [user]) as producer:
            await eventually(lambda: len(producer.acked[user]) > 100)
            await asyncio.to_thread(redis_cluster.migrate_slot, slot, target)
            moved = len(producer.acked[user])
            await eventually(lambda: len(producer.acked[user]) > moved + 100)
        assert redis_cluster.master_for_slot(slot) == target
        await eventually(lambda: all(len(a) >= len(producer.acked[user]) for a in arrivals), 30)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    for tab in tabs:
        ids = [id_of(f) for f in tab.frames if f["type"].startswith("ui_")]
        assert ids == producer.acked[user]  # none lost, none twice, in order
        assert not any(f["type"] == "insight_gap" for f in tab.frames)
    stall = max(max(b - a for a, b in itertools.pairwise(times)) for times in arrivals)
    assert stall < 3.0, f"events stalled for {stall:.1f} s during the migration"
    print(f"migration: longest pause between two events at a socket {stall * 1000:.0f} ms")
    await asyncio.gather(*(tab.close() for tab in tabs))


@pytest.mark.parametrize("replicas", [1, 2])
async def test_events_min_replicas_returns_only_once_the_replicas_hold_the_write(
    redis_cluster: LocalCluster, replicas: int
) -> None:
    """EVENTS_MIN_REPLICAS=1: every master has one replica, so publishing and revoking work,
    sync and async; =2: no master has two, so both say so rather than pretend."""
    from realtime.broker.topology import async_client
    from realtime.eventlog import AsyncEventLog, Durability
    from realtime.revocation import revocation_mark

    durability = Durability(min_replicas=replicas, timeout_ms=200)
    users = [unique("durable") for _ in range(6)]  # over several masters
    sync_log = EventLog(sync_client(redis_cluster.url), RETENTION, durability)
    async_log = AsyncEventLog(
        await async_client(redis_cluster.url), RETENTION, durability=durability
    )
    for user in users:
        sync_ui = UIManager(Recipient.user(user), sync_log)
        async_ui = AsyncUIManager(Recipient.user(user), async_log)
        if replicas == 1:
            assert sync_ui.refresh().startswith("u")
            assert (await async_ui.refresh())[0] == "u"
            assert revocation_mark(sync_log.driver, user) is None
            mark = sync_ui.disconnect()
            assert revocation_mark(sync_log.driver, user) == mark
            assert await async_ui.disconnect() >= mark
        else:
            with pytest.raises(NotReplicated):
                sync_ui.refresh()
            with pytest.raises(NotReplicated):
                await async_ui.refresh()
            with pytest.raises(NotReplicated):
                sync_ui.disconnect()
            with pytest.raises(NotReplicated):
                await async_ui.disconnect()
    await async_log.client.aclose()


async def test_the_cli_publishes_through_a_cluster_named_by_any_node(
    cluster_edges: tuple[Edge, Edge], redis_cluster: LocalCluster, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(cluster_edges[1].ws_url, token(user))
    replica = redis_cluster.replicas()[0]  # any node will do, even a replica
    sent = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", "publish", "--user", user, "refresh"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "EVENTS_REDIS_URL": redis_cluster.node(replica).url},
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    [frame] = await client.events(1)
    assert id_of(frame) == sent.stdout.strip()
    await client.close()
