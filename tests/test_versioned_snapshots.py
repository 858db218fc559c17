"""Versioned snapshots: a snapshot published after a newer one of the same coalesce key, as
two processes publishing after their commits can do, reaches no client, live or on replay.

The worst order is the one tested: the newest first (a job's end), then the older one
arriving late (a count committed before the end and published after it).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import redis

from domain import announcements
from domain.jobs import JobView
from realtime import PublishOptions, Recipient, UIManager
from realtime.broker.memory import MemoryBroker
from realtime.frames import Position
from realtime.options import MAX_VERSION
from tests.figures import FIGURES
from tests.harness import Client, Edge, id_of, unique

pytestmark = pytest.mark.anyio


def test_a_late_older_version_is_stored_nowhere_and_returns_the_newest_id_in_memory() -> None:
    async def scenario() -> None:
        broker, recipient = MemoryBroker(), Recipient.user(unique("u"))

        async def snapshot(percent: int, version: int) -> str:
            body = f'{{"type":"ui_update","data":{{"percent":{percent}}}}}'
            options = PublishOptions(coalesce_key="job:1", version=version)
            return await broker.log.append(recipient, body, 60.0, options)

        running = await snapshot(50, 1050)
        final = await snapshot(100, MAX_VERSION)
        assert await snapshot(40, 1040) == final  # the late one
        assert await snapshot(100, MAX_VERSION) != final  # an equal version is published
        start = Position(recipient.letter, None, (0, 0))
        page = await broker.log.replay_page(
            recipient, start, check=False, max_entries=10, max_bytes=1 << 20
        )
        stored = [entry for _, entry, _, _ in page.entries]
        assert stored[:2] == [running.split(".")[-1], final.split(".")[-1]]
        assert len(stored) == 3
        broker.log.forget(recipient)  # as Redis losing its data: the versions go with the log
        assert await snapshot(40, 1040) not in (running, final)

    asyncio.run(scenario())


async def test_a_late_older_version_reaches_no_client_live_or_on_replay(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    user = unique("u")
    live = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)
    running = ui.update_ui({"percent": 50}, coalesce_key="job:1", version=1050)
    final = ui.update_ui({"percent": 100}, coalesce_key="job:1", version=MAX_VERSION)
    late = ui.update_ui({"percent": 40}, coalesce_key="job:1", version=1040)
    other_key = ui.update_ui({"percent": 40}, coalesce_key="job:2", version=1040)

    assert late == final
    assert [id_of(f) for f in await live.events(3)] == [running, final, other_key]
    assert await live.silent_for(0.3)
    assert redis_client.xlen(Recipient.user(user).stream_key) == 3
    resumed = await Client.connect(edge.ws_url, token(user), since=running)
    replayed = [id_of(f) for f in resumed.frames if f["type"].startswith("ui_")]
    assert replayed == [final, other_key]
    assert await resumed.silent_for(0.3)
    await live.close()
    await resumed.close()


async def test_snapshots_racing_from_eight_threads_never_go_back_live_or_in_the_log(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    """The worst concurrency: eight publishers at once, each sending versions in random order.
    Whatever interleaving Redis sees, what is stored and what a socket receives only rises,
    and ends at the highest version."""
    user = unique("u")
    live = await Client.connect(edge.ws_url, token(user))
    ui = UIManager.for_user(user)
    versions = list(range(400))
    random.shuffle(versions)

    def publish(share: list[int]) -> None:
        for version in share:
            ui.update_ui({"v": version}, coalesce_key="job:race", version=version)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(publish, [versions[n::8] for n in range(8)]))
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]], redis_client.xrange(Recipient.user(user).stream_key)
    )
    stored = [json.loads(fields[b"f"])["data"]["v"] for _, fields in entries]
    assert stored == sorted(stored)
    assert stored[-1] == 399
    received = [frame["data"]["v"] for frame in await live.events(len(stored))]
    assert received == stored
    assert await live.silent_for(0.3)
    await live.close()


async def test_a_batch_count_published_after_the_batch_was_cancelled_is_dropped(
    edge: Edge, token: Callable[..., str]
) -> None:
    """The race CI met: an order's count of its import (40%) commits, the owner's cancel
    commits after it and publishes the import's end, and only then the count goes out."""
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    batch = JobView(unique("job"), "import", user, None, "running", {}, None, None, False, None)
    announcements.progress(batch, 40, done=4, total=10)
    cancelled = JobView(batch.id, "import", user, None, "cancelled", {}, None, None, False, None)
    announcements.progress(cancelled, 100, "cancelled", done=10, total=10)
    announcements.progress(batch, 50, done=5, total=10)  # committed before the cancel

    frames = await client.events(2)
    assert [(f["data"]["status"], f["data"]["percent"]) for f in frames] == [
        ("running", 40),
        ("cancelled", 100),
    ]
    assert await client.silent_for(0.3)
    await client.close()


async def test_figures_computed_earlier_and_pushed_later_do_not_replace_newer_ones(
    edge: Edge, token: Callable[..., str]
) -> None:
    """Beat's figures and a recalculation's finish out of order: the dashboard keeps the
    figures computed later."""
    business = unique("b")
    member = await Client.connect(edge.ws_url, token(unique("u"), business))
    later = {**FIGURES, "computed_at": "2026-12-07T12:00:01.000002+00:00"}
    earlier = {**FIGURES, "computed_at": "2026-12-07T12:00:01.000001+00:00"}
    announcements.push_metrics(business, later)
    announcements.push_metrics(business, earlier)
    [frame] = await member.events(1)
    assert frame["data"]["metrics"]["computed_at"] == later["computed_at"]
    assert await member.silent_for(0.3)
    await member.close()


def test_a_version_needs_a_coalesce_key_and_fits_a_lua_number() -> None:
    with pytest.raises(ValueError, match="coalesce_key"):
        PublishOptions(version=1)
    for bad in (-1, MAX_VERSION + 1, 10.5, True):
        with pytest.raises(ValueError, match="version"):
            PublishOptions(coalesce_key="k", version=bad)  # type: ignore[arg-type]
