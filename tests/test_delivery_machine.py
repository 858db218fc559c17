"""The edge's delivery state machine (hub, connection, catch-up) over the in-memory broker:
replay merged in publish order, nothing twice, coalescing, the 1013 policy, the replay budget.
Pure logic, in one process, in milliseconds; the same guarantees are tested end to end against
real Redis and edge processes elsewhere (test_delivery, test_resume, test_paged_replay,
test_nothing_held, test_cluster...). The catch-up's races: test_catch_up_races.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from edge.catch_up import catch_up
from edge.close_codes import CloseCode
from realtime.broker.memory import MemoryBroker
from realtime.recipients import Recipient
from tests.delivery_machine import (
    PLAIN,
    Tab,
    broker,
    connect,
    make_hub,
    publish,
    resuming,
    settle,
)

__all__ = ["broker"]  # the fixture, used by name

pytestmark = pytest.mark.anyio


async def test_a_resume_merges_three_logs_in_publish_order_over_many_small_pages(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    first = await connect(hub, broker, "u1")
    hub.detach(first.connection)
    recipients = [Recipient.user("u1"), Recipient.business("b1"), Recipient.everyone()]
    for n in range(300):
        await publish(broker, recipients[n % 3], n)

    back = Tab(resuming(first))
    await hub.listen(back.connection)
    reading = asyncio.create_task(
        catch_up(back.connection, broker.log, budget=600, announce=True, read_timeout=5)
    )
    while not reading.done():  # a socket that drains as the replay is queued
        back.drain(5)
        await asyncio.sleep(0)
    back.drain()
    assert back.ns() == list(range(300))
    assert back.frames[-1]["type"] == "insight_ready"


async def test_live_events_during_a_catch_up_arrive_once_even_when_the_held_ones_are_let_go(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    user = Recipient.user("u2")
    first = await connect(hub, broker, "u2", None)
    hub.detach(first.connection)
    for n in range(100):
        await publish(broker, user, n)
    connection = resuming(first, capacity=8)
    back = Tab(connection)
    await hub.listen(connection)
    reading = asyncio.create_task(
        catch_up(connection, broker.log, budget=2_000, announce=True, read_timeout=5)
    )
    for n in range(100, 160):  # live, while the replay pages through, 3 per loop turn
        await publish(broker, user, n)
        if n % 3 == 0:
            back.drain(2)
            await asyncio.sleep(0)
    while not reading.done():
        back.drain(2)
        await asyncio.sleep(0)
    await settle()
    back.drain()
    assert connection.held_let_go > 0  # the buffer of 8 overflowed while catching up
    assert back.ns() == list(range(160))


async def test_a_slow_connection_coalesces_updates_and_is_closed_1013_past_its_buffer(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    user = Recipient.user("u3")
    tab = await connect(hub, broker, "u3", None, capacity=4)
    for n in range(10):
        await publish(broker, user, n, coalesce_key="snapshot")
    await settle()
    tab.drain()
    assert tab.ns() == [9]  # each replaced the one still queued
    assert tab.connection.close_code is None
    for n in range(10, 16):
        await publish(broker, user, n)
    await settle()
    assert tab.connection.close_code == CloseCode.TRY_AGAIN_LATER


async def test_events_published_while_a_node_is_lost_are_caught_up_once_when_it_returns(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    user = Recipient.user("u4")
    tab = await connect(hub, broker, "u4", None)
    await publish(broker, user, 0)
    await settle()
    channel = {user.live_channel.encode()}
    broker.live.interrupt(channel)
    for n in range(1, 5):
        await publish(broker, user, n)  # lost live: only the log has them
    broker.live.restore(channel)
    await settle()
    await asyncio.gather(*hub._resyncs)
    await publish(broker, user, 5)
    await settle()
    tab.drain()
    assert tab.ns() == [0, 1, 2, 3, 4, 5]


async def test_a_cursor_from_another_epoch_resumes_from_the_new_logs_start_after_a_gap(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    user = Recipient.user("u5")
    await publish(broker, user, 0)
    tab = await connect(hub, broker, "u5", None, since="u1.9999999999999999-0")
    assert [f["type"] for f in tab.frames] == ["insight_gap", "ui_update", "insight_ready"]
    await publish(broker, user, 1)
    await settle()
    tab.drain()
    assert tab.ns() == [0, 1]


async def test_a_revocation_closes_only_the_users_older_sessions(broker: MemoryBroker) -> None:
    hub = make_hub(broker)
    await hub.start()
    tab = await connect(hub, broker, "u6", None)
    other = await connect(hub, broker, "u7", None)
    broker.presence.revoke("u6")
    await settle()
    assert tab.connection.close_code == CloseCode.UNAUTHORIZED
    assert tab.connection in hub.revoked
    assert other.connection.close_code is None


async def test_a_catch_up_never_holds_more_than_its_budget_for_a_socket_that_takes_nothing(
    broker: MemoryBroker,
) -> None:
    hub = make_hub(broker)
    await hub.start()
    user = Recipient.user("u8")
    first = await connect(hub, broker, "u8", None)
    hub.detach(first.connection)
    pad = "x" * 10_000
    for n in range(200):  # 2 MB of log
        body = json.dumps({"type": "ui_update", "data": {"n": n, "pad": pad}})
        await broker.log.append(user, body, 600, PLAIN)
    connection = resuming(first, capacity=256)
    await hub.listen(connection)
    budget = 100_000
    reading = asyncio.create_task(
        catch_up(connection, broker.log, budget=budget, announce=True, read_timeout=5)
    )
    for _ in range(50):
        await asyncio.sleep(0)
    queued = sum(len(frame) for frame in connection.unsent())
    assert 0 < queued <= budget
    assert not reading.done()  # waiting for the socket to take what is queued
    connection.hang_up()
    await asyncio.wait_for(reading, 1)
