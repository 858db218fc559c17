"""A resume reads the logs a page at a time (docs/protocol.md, "Nothing held"): never more than
WS_REPLAY_MAX_BYTES of replay is held per connection at once, the rest follows as the socket
drains, and one client's replay never stalls other users.

Before the fix a resume was one Redis reply holding the whole log: one user's 50 sockets that
never read, resuming a log of 1,000 events of 60 kB, took the edge from 70 MB to 1,274 MB.

The merge is the delicate part: the user's, the business's and everyone's logs are paged
separately, and their events must still arrive in publish order, once each, with the live
events published meanwhile; the tests below make pages small and interleave all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosedError

from cli.local_redis import LocalRedis
from edge.close_codes import CloseCode
from realtime import UIManager
from tests.harness import Client, Edge, eventually, id_of, last_id, start_edge, unique
from tests.stalled_peer import StalledPeer, rss_bytes

pytestmark = pytest.mark.anyio

BUDGET = 256 * 1024  # the smallest WS_REPLAY_MAX_BYTES: many pages, even for small logs
RESUMES = 10  # a client told 1013 comes back with `since`; this many times at most


@pytest.fixture(scope="module")
def paging_edge(redis_server: LocalRedis, artifacts: Path) -> Iterator[Edge]:
    """An edge with the smallest replay budget and a small live buffer, so that pages are
    many and live events held during a catch-up are let go (and read from the logs)."""
    edge = start_edge(
        redis_server.url, artifacts, WS_REPLAY_MAX_BYTES=str(BUDGET), WS_SEND_BUFFER="8"
    )
    yield edge
    edge.stop()


def publish_interleaved(user: str, business: str, count: int, size: int, tag: str) -> list[str]:
    """`count` events of about `size` bytes, turn by turn to the user, the business and
    everyone (marked with `tag`, as other tests broadcast too); returns their ids in order."""
    senders = [UIManager.for_user(user), UIManager.for_business(business), UIManager.broadcast()]
    pad = "p" * size
    return [senders[n % 3].update_ui({"tag": tag, "n": n, "pad": pad}) for n in range(count)]


def mine(frames: list[dict[str, object]], tag: str) -> list[str]:
    return [
        id_of(f)
        for f in frames
        if f["type"] == "ui_update" and isinstance(f["data"], dict) and f["data"]["tag"] == tag
    ]


async def test_a_resume_of_three_interleaved_logs_arrives_in_order_once_over_many_pages(
    paging_edge: Edge, token: Callable[..., str]
) -> None:
    user, business, tag = unique("u"), unique("b"), unique("t")
    first = await Client.connect(paging_edge.ws_url, token(user, business))
    await first.close()
    published = publish_interleaved(user, business, 300, 8_000, tag)  # 2.4 MB: ~30 pages

    back = await Client.connect(paging_edge.ws_url, token(user, business), since=first.cursor)
    assert not any(f["type"] == "insight_gap" for f in back.frames)
    assert mine(back.frames, tag) == published
    await back.close()


async def test_live_events_published_during_a_long_replay_arrive_once_in_order(
    paging_edge: Edge, token: Callable[..., str]
) -> None:
    """Live events arriving while the replay pages through are held, and past the live
    buffer (8 here) let go and read from the logs instead: none lost, none twice. A buffer of
    8 also means that a client still reading the replay when the live events come may be
    told 1013; it resumes with `since`, as insight.js does, and the guarantee holds across."""
    user, business, tag = unique("u"), unique("b"), unique("t")
    first = await Client.connect(paging_edge.ws_url, token(user, business))
    await first.close()
    published = publish_interleaved(user, business, 200, 8_000, tag)
    during: list[str] = []
    started = threading.Event()

    def keep_publishing() -> None:
        started.wait(10)
        during.extend(publish_interleaved(user, business, 150, 100, tag))

    publisher = threading.Thread(target=keep_publishing)
    publisher.start()
    frames: list[dict[str, object]] = []
    try:
        await follow(paging_edge, token(user, business), first.cursor, frames, started.set)
    finally:
        publisher.join(30)
    expected = published + during
    if expected[-1] not in mine(frames, tag):  # held ones come before insight_ready
        with contextlib.suppress(TimeoutError):  # if it never comes, the diff below says why
            last = expected[-1]
            await follow(paging_edge, token(user, business), None, frames, until_id=last)
    got = mine(frames, tag)
    assert got == expected, {
        "lost": sorted(set(expected) - set(got)),
        "twice": sorted({i for i in got if got.count(i) > 1}),
        "out of order": [
            (n, i) for n, (i, e) in enumerate(zip(got, expected, strict=False)) if i != e
        ][:6],
    }


async def follow(
    edge: Edge,
    jwt: str,
    since: str | None,
    frames: list[dict[str, object]],
    opened: Callable[[], object] = lambda: None,
    *,
    until_id: str | None = None,
) -> None:
    """Read as a client following the protocol: until `insight_ready` (or, with `until_id`,
    that event), resuming with the last id it saw whenever the edge closes 1013. `since`
    None resumes from the last id in `frames`; every frame read is added to `frames`."""
    for _ in range(RESUMES):
        cursor = since or last_id(frames)
        since = None
        client = await Client.connect(edge.ws_url, jwt, since=cursor, wait_ready=False)
        opened()
        try:
            if until_id is None:
                await client.until(lambda f: f["type"] == "insight_ready")
            else:
                await client.until(lambda f: f["type"] == "ui_update" and id_of(f) == until_id)
            return
        except ConnectionClosedError as closed:
            if closed.rcvd is None or closed.rcvd.code != CloseCode.TRY_AGAIN_LATER:
                raise
        finally:
            frames.extend(client.frames)
            await client.ws.close()
    raise AssertionError(f"still told 1013 after {RESUMES} resumes")


async def test_sockets_that_never_read_resuming_a_huge_log_hold_at_most_the_budget(
    redis_server: LocalRedis, artifacts: Path, token: Callable[..., str]
) -> None:
    """Twenty sockets of one user resume a log of 300 events of 60 kB (18 MB) and never
    read. Read whole, each would hold the log (360 MB in all); paged, each holds about the
    budget. Meanwhile another user's events keep arriving at once, and afterwards the edge
    gives the memory back."""
    edge = start_edge(redis_server.url, artifacts, WS_REPLAY_MAX_BYTES=str(BUDGET))
    try:
        hoarder, other = unique("hoarder"), unique("other")
        start = await Client.connect(edge.ws_url, token(hoarder))
        await start.close()
        ui = UIManager.for_user(hoarder)
        for n in range(300):
            ui.update_ui({"n": n, "pad": "x" * 60_000})
        watcher = await Client.connect(edge.ws_url, token(other))
        baseline = rss_bytes(edge)

        since = start.cursor
        peers = [StalledPeer(edge.port, token(hoarder), since=since) for _ in range(20)]
        try:
            await eventually(lambda: UIManager.for_user(hoarder).connections() == 20)
            peak = baseline
            latencies = []
            for n in range(20):  # another user's events, while the twenty replays are held
                sent = time.monotonic()
                event_id = UIManager.for_user(other).update_ui({"n": n})
                assert [id_of(f) for f in await watcher.events(1)] == [event_id]
                latencies.append(time.monotonic() - sent)
                peak = max(peak, rss_bytes(edge))
                await asyncio.sleep(0.05)
        finally:
            for peer in peers:
                peer.close()
        # Each connection: its budget, and what its transport took before the peer's window
        # shut (the edge writes at most a batch past the transport's high-water mark).
        per_connection = BUDGET + 512 * 1024
        assert peak - baseline < 20 * per_connection + 32 * 1024 * 1024, (baseline, peak)
        assert max(latencies) < 2.0, latencies  # not a benchmark: a stall would take seconds
        await eventually(lambda: edge.connection_count() == 1)
        await eventually(lambda: rss_bytes(edge) < baseline + 32 * 1024 * 1024)
        await watcher.close()
    finally:
        edge.stop()
