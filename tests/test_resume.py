"""Reconnecting with `since` replays exactly what was missed: none lost, none twice, in order."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import redis

from realtime import Recipient, UIManager
from realtime.eventlog import EventLog, Retention
from tests.harness import Client, Edge, id_of, unique

pytestmark = pytest.mark.anyio


async def test_reconnect_with_since_replays_missed_events(
    edge: Edge, token: Callable[..., str]
) -> None:
    user, business = unique("u"), unique("b")
    client = await Client.connect(edge.ws_url, token(user, business))
    first = UIManager.for_user(user).show_toast("Seen", "before the drop", "info")
    assert [id_of(f) for f in await client.events(1)] == [first]
    await client.close()

    missed = [
        UIManager.for_user(user).update_ui({"n": 1}),
        UIManager.for_business(business).update_ui({"n": 2}),
        UIManager.for_user(unique("someone-else")).update_ui({"n": "not mine"}),
        UIManager.broadcast().show_toast("All", "hands", "info"),
        UIManager.for_user(user).redirect("/orders"),
    ]
    mine = [missed[0], missed[1], missed[3], missed[4]]

    back = await Client.connect(edge.ws_url, token(user, business), since=client.cursor)
    replayed = [id_of(f) for f in back.frames if f["type"].startswith("ui_")]
    assert replayed == mine
    assert not any(f["type"] == "insight_gap" for f in back.frames)
    later = UIManager.for_user(user).refresh()
    assert [id_of(f) for f in await back.events(1)] == [later]
    assert await back.silent_for(0.2)
    await back.close()


async def test_a_client_that_dropped_before_any_event_resumes_from_its_ready_cursor(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    assert client.frames == [{"type": "insight_ready", "id": client.cursor}]
    await client.close()
    missed = [UIManager.for_user(user).update_ui({"n": n}) for n in range(3)]
    back = await Client.connect(edge.ws_url, token(user), since=client.cursor)
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == missed
    await back.close()


async def test_resume_while_events_keep_flowing_has_no_gap_and_no_duplicate(
    edge: Edge, token: Callable[..., str]
) -> None:
    user = unique("u")
    published: list[str] = []
    stop = threading.Event()

    def publish_steadily() -> None:
        ui = UIManager.for_user(user)
        n = 0
        while not stop.is_set():
            published.append(ui.update_ui({"n": n}))
            n += 1
            time.sleep(0.001)

    # A client that buffers whatever arrives (max_queue=None): websockets' default queue of 16
    # fills in 16 ms here, then stops reading, so its close never sees the edge's close frame
    # and gives up only after close_timeout (10 s), and the events of those 10 s outgrow the
    # log's retention: the resume then rightly gets insight_gap, a failure of the test's client
    # (seen in CI), not of the edge.
    client = await Client.connect(edge.ws_url, token(user), max_queue=None)
    producer = threading.Thread(target=publish_steadily)
    producer.start()
    received: list[str] = []
    try:
        for _ in range(5):  # drop and resume five times while the producer runs
            received += [id_of(f) for f in await client.events(20)]
            await asyncio.sleep(0.05)  # the client is slow to leave: events pile up meanwhile
            await client.close()
            client = await Client.connect(
                edge.ws_url, token(user), since=received[-1], max_queue=None
            )
            received += [id_of(f) for f in client.frames if f["type"].startswith("ui_")]
    finally:
        stop.set()
        producer.join(10)
    final = published[-1]
    async with asyncio.timeout(10):
        while not received or received[-1] != final:
            received += [id_of(f) for f in await client.events(1)]
    await client.close()
    assert received == published  # every event, once, in order


async def test_a_cursor_past_retention_gets_the_gap_signal(
    edge_factory: Callable[..., Edge], token: Callable[..., str], redis_client: redis.Redis
) -> None:
    small = edge_factory(EVENTS_MAX_LEN="10")
    user = unique("u")
    client = await Client.connect(small.ws_url, token(user))
    await client.close()
    # publish with the same small retention as that edge
    ui = UIManager(Recipient.user(user), log=EventLog(redis_client, Retention(10, 3600)))
    ids = [ui.update_ui({"n": n}) for n in range(400)]

    back = await Client.connect(small.ws_url, token(user), since=client.cursor)
    assert back.frames[0] == {"type": "insight_gap", "since": client.cursor}
    replayed = [id_of(f) for f in back.frames if f["type"].startswith("ui_")]
    assert replayed == ids[-len(replayed) :]  # what is left is the newest, in order
    assert 10 <= len(replayed) < 400
    await back.close()

    # A cursor within the retention replays without the signal.
    fresh = await Client.connect(small.ws_url, token(user), since=ids[-3])
    assert [f["type"] for f in fresh.frames] == ["ui_update", "ui_update", "insight_ready"]
    await fresh.close()


async def test_expired_events_are_not_replayed(edge: Edge, token: Callable[..., str]) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    await client.close()
    ui = UIManager.for_user(user)
    ui.redirect("/stale", ttl=0.05)
    lasting = ui.show_toast("Still relevant", "", "info")
    await asyncio.sleep(0.1)  # let the redirect's 50 ms lifetime pass: the behaviour under test
    back = await Client.connect(edge.ws_url, token(user), since=client.cursor)
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == [lasting]
    await back.close()


async def test_a_cursor_from_a_lost_log_gets_the_gap_signal(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    user = unique("u")
    client = await Client.connect(edge.ws_url, token(user))
    UIManager.for_user(user).refresh()
    await client.events(1)
    await client.close()
    redis_client.flushall()  # what a Redis restart without persistence does to the log
    back = await Client.connect(edge.ws_url, token(user), since=client.cursor)
    assert back.frames[0] == {"type": "insight_gap", "since": client.cursor}
    await back.close()


async def test_a_cursor_from_another_epoch_resumes_from_the_new_logs_start_then_goes_live(
    edge: Edge, token: Callable[..., str]
) -> None:
    """Nothing silent: a position in another incarnation of the log means nothing in this
    one. Before the fix it was kept under the new epoch, so with a position far ahead the
    client got the gap, then no event at all until the Redis clock passed it."""
    user = unique("u")
    ui = UIManager.for_user(user)
    in_new_log = ui.update_ui({"n": 1})
    stale = "u1.9999999999999999-0"  # another epoch, and a position far in the future
    back = await Client.connect(edge.ws_url, token(user), since=stale)
    assert back.frames[0] == {"type": "insight_gap", "since": stale}
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == [in_new_log]
    live = ui.update_ui({"n": 2})
    assert [id_of(f) for f in await back.events(1)] == [live]
    await back.close()


async def test_a_log_that_lost_events_the_client_saw_is_reported_as_a_gap(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    """What a failover does when the promoted replica lacks acknowledged writes: the log
    ends before the client's position. The client is told, not silently resumed."""
    user = unique("u")
    recipient = Recipient.user(user)
    client = await Client.connect(edge.ws_url, token(user))
    kept = UIManager.for_user(user).update_ui({"n": 1})
    lost = UIManager.for_user(user).update_ui({"n": 2})
    assert [id_of(f) for f in await client.events(2)] == [kept, lost]
    await client.close()
    entry = lost.partition(".")[2]
    redis_client.xdel(recipient.stream_key, entry)
    redis_client.hset(recipient.meta_key, "last", kept.partition(".")[2])
    later = UIManager.for_user(user).update_ui({"n": 3})
    back = await Client.connect(edge.ws_url, token(user), since=client.cursor)
    assert back.frames[0] == {"type": "insight_gap", "since": client.cursor}
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == [later]
    await back.close()


async def test_a_logs_metadata_lives_no_longer_than_the_log(
    edge: Edge, token: Callable[..., str], redis_client: redis.Redis
) -> None:
    """Redis sizing: the metadata of a log (its epoch, its newest and trimmed ids) is made
    by a first read, even of a user who only connected, and kept by every append; it lived
    7 days, and now no longer than the log's entries (EVENTS_MAX_AGE_SECONDS)."""
    user = unique("u")
    recipient = Recipient.user(user)
    retention_ms = 3600 * 1000  # the edge's and the publisher's EVENTS_MAX_AGE_SECONDS
    client = await Client.connect(edge.ws_url, token(user))
    assert 0 < redis_client.pttl(recipient.meta_key) <= retention_ms
    UIManager.for_user(user).refresh()
    assert 0 < redis_client.pttl(recipient.meta_key) <= retention_ms
    assert 0 < redis_client.pttl(recipient.stream_key) <= retention_ms
    await client.close()


def test_a_log_kept_less_than_a_types_default_ttl_shortens_it(redis_client: redis.Redis) -> None:
    """EVENTS_MAX_AGE_SECONDS may be 60: an update's default TTL (600 s) is then the log's
    retention, as over HTTP, rather than a ValueError in every producer."""
    user = Recipient.user(unique("u"))
    ui = UIManager(user, log=EventLog(redis_client, Retention(1000, 120)))
    ui.update_ui({"n": 1})
    entries = redis_client.xrange(user.stream_key)
    assert entries is not None
    [(_, fields)] = entries
    assert fields is not None
    expires_in = int(fields[b"x"]) / 1e6 - time.time()
    assert 100 < expires_in <= 120


async def test_a_resume_into_a_business_replays_its_events_since_the_cursor(
    edge: Edge, token: Callable[..., str]
) -> None:
    """A resume reads no clock before its upgrade (a reconnect storm pays no extra round trip
    each): a cursor of a session without a business, resumed with a token that names one,
    starts the business's log where the cursor stands, so nothing published meanwhile is lost."""
    user, business = unique("u"), unique("b")
    alone = await Client.connect(edge.ws_url, token(user))
    await alone.close()
    meanwhile = UIManager.for_business(business).show_toast("Welcome", "to the team", "info")
    back = await Client.connect(edge.ws_url, token(user, business), since=alone.cursor)
    assert [id_of(f) for f in back.frames if f["type"].startswith("ui_")] == [meanwhile]
    await back.close()
