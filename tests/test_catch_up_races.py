"""The catch-up's races, over the in-memory broker: what is published or let go while a
catch-up reads its logs, at the worst moment. Each was found by a test against real processes
under load (test_paged_replay in CI) and is pinned here, deterministically, in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from edge.catch_up import catch_up
from edge.hub import Hub
from realtime import PublishOptions
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


class ActsAfterARead:
    """The memory log, except that once armed, right after it reads a page of `user`'s log
    (one that reached the log's end, with `at_end`), it runs `act` before it answers: what
    happens when Redis answers a read while publishes and the live feed run ahead of it."""

    def __init__(
        self,
        broker: MemoryBroker,
        user: Recipient,
        act: Callable[[], Awaitable[None]],
        *,
        at_end: bool = False,
    ) -> None:
        self.broker, self.user, self.act, self.at_end = broker, user, act, at_end
        self.armed = False

    async def append(
        self, recipient: Recipient, body: str, ttl: float, options: PublishOptions
    ) -> str:
        return await self.broker.log.append(recipient, body, ttl, options)

    async def replay_page(self, recipient: Recipient, after: Any, **page: Any) -> Any:
        reply = await self.broker.log.replay_page(recipient, after, **page)
        if recipient == self.user and self.armed and not (self.at_end and reply.more):
            self.armed = False
            await self.act()
        return reply

    async def server_time(self) -> tuple[int, int]:
        return await self.broker.log.server_time()


def publishing(broker: MemoryBroker, events: list[tuple[Recipient, int]]) -> Callable[[], Any]:
    """An act that publishes `events` (recipient, n) in order, and lets the hub hear them."""

    async def act() -> None:
        for recipient, n in events:
            await publish(broker, recipient, n)
        await settle()

    return act


async def test_live_events_let_go_during_the_last_read_are_read_again_not_lost(
    broker: MemoryBroker,
) -> None:
    """The catch-up's last round: its read reached the end of every log, but more live events
    than the buffer holds arrived before its reply, and were let go. They are in the log, and
    only a further round reads them: without it they are lost."""
    user = Recipient.user("u9")
    burst = [(user, n) for n in range(5, 25)]  # 20 events, over the buffer of 8
    late = ActsAfterARead(broker, user, publishing(broker, burst), at_end=True)
    hub = Hub(late, broker.live, subscribe_timeout=1.0, replay_budget=1 << 20)
    await hub.start()
    first = await connect(hub, broker, "u9", None)
    hub.detach(first.connection)
    for n in range(5):
        await publish(broker, user, n)
    connection = resuming(first, capacity=8)
    await hub.listen(connection)
    late.armed = True
    await catch_up(connection, late, budget=1 << 20, announce=True, read_timeout=5)
    tab = Tab(connection)
    tab.drain()
    assert connection.held_let_go > 0
    assert tab.ns() == list(range(25))


async def test_live_events_let_go_after_a_log_was_read_to_its_end_are_read_again_not_lost(
    broker: MemoryBroker,
) -> None:
    """The user's log is read to its end in the first round while the business's still pages
    on; live events for the user then overflow the held buffer and are let go while the
    catch-up waits for the socket. The user's log must be read again: the CI failure of
    test_paged_replay, where one such event never arrived."""
    hub = make_hub(broker)
    await hub.start()
    user, business = Recipient.user("u10"), Recipient.business("b10")
    first = await connect(hub, broker, "u10", "b10")
    hub.detach(first.connection)
    pad = "x" * 2_000
    await publish(broker, user, 0)
    for n in range(1, 61):  # 120 kB of the business's log: many pages of a 4 kB budget
        body = json.dumps({"type": "ui_update", "data": {"n": n, "pad": pad}})
        await broker.log.append(business, body, 600, PLAIN)
    connection = resuming(first, capacity=8)
    back = Tab(connection)
    await hub.listen(connection)
    reading = asyncio.create_task(
        catch_up(connection, broker.log, budget=4_000, announce=True, read_timeout=5)
    )
    for _ in range(50):  # the first round is queued; the catch-up waits for room
        await asyncio.sleep(0)
    assert not reading.done()
    for n in range(61, 81):  # 20 live events for the user: over the held buffer of 8
        await publish(broker, user, n)
    await settle()
    assert connection.held_let_go > 0
    while not reading.done():
        back.drain(2)
        await asyncio.sleep(0)
    await settle()
    back.drain()
    assert back.ns() == list(range(81))


async def test_an_event_published_while_a_round_reads_keeps_its_place_among_the_other_logs(
    broker: MemoryBroker,
) -> None:
    """Found under load in CI: a user's event published between the reads of the user's log
    and the business's arrived after the business's later event."""
    user, business = Recipient.user("u11"), Recipient.business("b11")
    between = publishing(broker, [(user, 3), (business, 4)])  # the business's page has 4 only
    reads = ActsAfterARead(broker, user, between)
    hub = Hub(reads, broker.live, subscribe_timeout=1.0, replay_budget=1 << 20)
    await hub.start()
    first = await connect(hub, broker, "u11", "b11")
    hub.detach(first.connection)
    for n, recipient in enumerate((user, business, user)):
        await publish(broker, recipient, n)
    connection = resuming(first)
    await hub.listen(connection)
    reads.armed = True
    await catch_up(connection, reads, budget=1 << 20, announce=True, read_timeout=5)
    tab = Tab(connection)
    tab.drain()
    assert tab.ns() == [0, 1, 2, 3, 4]
