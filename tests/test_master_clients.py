"""A driver keeps a client per cluster master it writes to (realtime/broker/master_clients.py):
after a failover it holds clients of the masters of now only, and the demoted master's client
is closed, not kept for the life of the process (pure logic first, then a real cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from realtime.broker import master_clients
from realtime.broker.drivers import AsyncDriver, SyncDriver
from realtime.broker.master_clients import RETIRE_SECONDS, MasterClients
from realtime.broker.presence_calls import read_user
from realtime.broker.topology import async_client, sync_client
from realtime.recipients import Recipient
from tests.local_cluster import LocalCluster


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_former_masters_clients_are_retired_then_closed_once_no_call_can_wait_on_them() -> None:
    clock = Clock()
    clients: MasterClients[str] = MasterClients(clock)
    clients.add("a:1", "A")
    clients.add("b:1", "B")
    assert clients.retire(["a:1", "b:1"]) == []
    # a:1 failed over to c:1: its client is retired, not closed yet
    clients.add("c:1", "C")
    assert clients.retire(["b:1", "c:1"]) == []
    assert (clients.names, clients.get("a:1"), clients.retired) == ({"b:1", "c:1"}, None, 1)
    clock.now += RETIRE_SECONDS - 1
    assert clients.retire(["b:1", "c:1"]) == []  # a call may still wait on A
    clock.now += 1
    assert clients.retire(["b:1", "c:1"]) == ["A"]
    assert clients.retired == 0
    assert sorted(clients.take_all()) == ["B", "C"]
    assert clients.names == set()


def test_closing_the_driver_takes_the_retired_clients_too() -> None:
    clients: MasterClients[str] = MasterClients(Clock())
    clients.add("a:1", "A")
    clients.add("b:1", "B")
    assert clients.retire(["b:1"]) == []
    assert sorted(clients.take_all()) == ["A", "B"]


def users_by_master(cluster: LocalCluster, each: int = 8) -> dict[int, list[Recipient]]:
    """`each` users on each master, in slots of their own."""
    users: dict[int, list[Recipient]] = {port: [] for port in cluster.masters()}
    slots: set[int] = set()
    for n in range(100_000):
        user = Recipient.user(f"user-{n}")
        slot = key_slot(user.presence_key.encode())
        on = users[cluster.master_for_slot(slot)]
        if slot not in slots and len(on) < each:
            slots.add(slot)
            on.append(user)
        if all(len(found) == each for found in users.values()):
            return users
    raise AssertionError("too few users on some master")


def names(ports: list[int]) -> set[str]:
    return {f"127.0.0.1:{port}" for port in ports}


def connected(cluster: LocalCluster, port: int, client_id: int) -> bool:
    """Whether connection `client_id` is still open on node `port`."""
    return bool(cluster.node(port).execute("CLIENT", "LIST", "ID", str(client_id)))


@pytest.fixture
def retire_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Former masters' clients closed at the next change (no call waits on them here)."""
    monkeypatch.setattr(master_clients, "RETIRE_SECONDS", 0.0)


@pytest.mark.usefixtures("retire_at_once")
def test_after_a_failover_a_sync_driver_holds_the_current_masters_clients_only(
    fresh_cluster: LocalCluster,
) -> None:
    client = sync_client(fresh_cluster.url)
    driver = SyncDriver(client)
    users = [user for on in users_by_master(fresh_cluster).values() for user in on]
    for user in users:
        assert driver.run(read_user(user)) == 0
    assert driver._masters.names == names(fresh_cluster.masters())
    demoted = fresh_cluster.masters()[0]
    old = driver._masters.get(f"127.0.0.1:{demoted}")
    assert old is not None
    old_id = old.client_id()
    fresh_cluster.promote(fresh_cluster.replicas_of(demoted)[0])

    for user in users:  # a demoted master's slots: MOVED, then its heir's own client
        assert driver.run(read_user(user)) == 0
    assert driver._masters.names == names(fresh_cluster.masters())
    assert not connected(fresh_cluster, demoted, old_id)
    client.close()


@pytest.mark.anyio
@pytest.mark.usefixtures("retire_at_once")
async def test_after_a_failover_an_async_driver_holds_the_current_masters_clients_only(
    fresh_cluster: LocalCluster,
) -> None:
    client = await async_client(fresh_cluster.url)
    driver = AsyncDriver(client)
    users = [user for on in users_by_master(fresh_cluster).values() for user in on]
    for user in users:
        assert await driver.run(read_user(user)) == 0
    demoted = fresh_cluster.masters()[0]
    old: Any = driver._masters.get(f"127.0.0.1:{demoted}")
    old_id = await old.client_id()
    fresh_cluster.promote(fresh_cluster.replicas_of(demoted)[0])

    for user in users:
        assert await driver.run(read_user(user)) == 0
    assert driver._masters.names == names(fresh_cluster.masters())
    await driver.close()  # also waits for the former master's client to be closed
    assert not connected(fresh_cluster, demoted, old_id)  # its pool closed, not handed back
