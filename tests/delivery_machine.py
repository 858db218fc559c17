"""The edge's delivery state machine as the endpoint drives it, over the in-memory broker: a
tab (a connection and what its socket would have received), a hub, connecting, resuming and
publishing, for the tests of the hub, the connection and the catch-up (test_delivery_machine,
test_catch_up_races)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.security import Identity
from edge.catch_up import catch_up
from edge.connection import ClientConnection
from edge.hub import Hub
from realtime import PublishOptions
from realtime.broker import Broker
from realtime.broker.log_calls import Retention, start_position
from realtime.broker.memory import MemoryBroker
from realtime.frames import parse_cursor
from realtime.recipients import Recipient, recipients_of

PLAIN = PublishOptions()


@dataclass
class Tab:
    """A connection as the endpoint makes it, and what its socket would have received."""

    connection: ClientConnection
    frames: list[dict[str, Any]] = field(default_factory=list)

    def drain(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Take what the writer would send now."""
        taken = [json.loads(f) for f in self.connection.take(limit, 1 << 30)]
        self.frames.extend(taken)
        return taken

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"].startswith("ui_")]

    def ns(self) -> list[int]:
        return [f["data"]["n"] for f in self.events()]


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    memory = MemoryBroker(Retention(max_len=1000, max_age_seconds=3600))
    assert isinstance(memory, object)
    checked: Broker = memory  # the in-memory broker is a Broker (mypy checks this line)
    yield memory
    await checked.close()


def make_hub(broker: MemoryBroker, budget: int = 4 * 1024 * 1024) -> Hub:
    return Hub(broker.log, broker.live, subscribe_timeout=1.0, replay_budget=budget)


async def connect(
    hub: Hub,
    broker: MemoryBroker,
    user: str,
    business: str | None = "b1",
    *,
    since: str | None = None,
    capacity: int = 256,
) -> Tab:
    """A connection as the endpoint opens one: positions from `since` or the clock,
    subscribed, then caught up (run until its replay is queued)."""
    identity = Identity(user, business, None, time.time() + 3600, time.time())
    recipients = recipients_of(user, business)
    clock = await broker.log.server_time()
    given = parse_cursor(since) if since else {}
    assert given is not None
    positions = [given.get(r.letter) or start_position(r.letter, clock) for r in recipients]
    connection = ClientConnection(identity, recipients, positions, capacity, since=since)
    await hub.listen(connection)
    tab = Tab(connection)
    await catch_up(connection, hub.log, budget=1 << 30, announce=True, read_timeout=5)
    tab.drain()
    return tab


def resuming(gone: Tab, capacity: int = 256) -> ClientConnection:
    """The connection of a client that comes back with the cursor of `gone`."""
    old = gone.connection
    return ClientConnection(
        old.identity, old.recipients, list(old.positions), capacity, since=old.cursor
    )


async def publish(broker: MemoryBroker, recipient: Recipient, n: int, **options: Any) -> str:
    body = json.dumps({"type": "ui_update", "data": {"n": n}}, separators=(",", ":"))
    return await broker.log.append(recipient, body, 600, PublishOptions(**options))


async def settle() -> None:
    """Let announcements made so far reach the hub (they arrive on the next loop turns)."""
    for _ in range(3):
        await asyncio.sleep(0)
