"""Catching a connection up from the logs of its recipients, a page at a time.

A connection resumes from a position in up to three logs (its user's, its business's,
everyone's), and the events it missed must arrive merged in publish order, once each, before
the live ones held meanwhile. A log may hold a thousand events of 60 kB: read whole, one
resume held 60 MB in the edge and made Redis build a 60 MB reply while every other client
waited. So each log is read in pages (`LogStore.replay_page`: at most PAGE_ENTRIES entries and
about a page of bytes per Redis call), and the next pages are read only once the socket has
taken what was queued: at most `budget` bytes of replay are held per connection at once
(WS_REPLAY_MAX_BYTES), the rest follows as the socket drains.

**Merging pages.** Each round reads one page of every log. A page that stopped early may be
followed by entries older than another log's last ones, and a log read to its end gets new
entries as it is read; each page says up to where it holds every entry of its log (`through`:
its last entry, or at the log's end the clock). A round queues the entries up to the lowest of
these (`bound`), merged in publish order, and each log is read on after the last entry of it
that was up to the bound: never past an entry it did not queue, whatever the clocks say.

**Live events meanwhile** are held by the connection; if more arrive than its capacity, it lets
them go (each is in its log) and counts that (`held_let_go`). The catch-up ends after a round
in which every log was read to its end and nothing was let go: every event let go before it is
in its pages. The entries past the bound (appended while the round read) are then merged with
the held events, by key, so the last of the replay and the first live events keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from dataclasses import dataclass

from edge.connection import ClientConnection
from realtime.broker import LogStore, Page
from realtime.frames import Key, Position

PAGE_ENTRIES = 1024  # entries per page, whatever their size (a whole default-sized log)
FIRST_PAGE_BYTES = 32 * 1024  # the first round's pages: most resumes are read whole in it
PAGE_BYTES = 256 * 1024  # the most any page holds (give or take its last entry)


@dataclass(frozen=True, slots=True)
class Reads:
    """Page reads in flight across an edge's connections: any at all (`any`: after a node came
    back, thousands of connections catch up at once), and big ones (`bulk`). Redis builds a
    page in one go while every other client's call waits, so the pages after a resume's
    first round, which only a big log has, are read a few at a time: one client's replay of a
    big log never queues more than a few pages ahead of other users' publishes."""

    any: asyncio.Semaphore
    bulk: asyncio.Semaphore


@dataclass(slots=True)
class _Reading:
    """Where the catch-up stands in one recipient's log."""

    index: int
    after: Position  # the next page starts after this (an entry, or a point between two)
    checked: bool = False  # the first page checked the position for a gap


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one catch-up sent: events replayed, and whether it reported a gap."""

    replayed: int
    gap: bool


async def catch_up(
    connection: ClientConnection,
    log: LogStore,
    *,
    budget: int,
    announce: bool,
    read_timeout: float,
    reads: Reads | None = None,
) -> Outcome:
    """Replay what the connection missed from its positions, then let live events through
    (and, with `announce`, send `insight_ready`). Holds at most about `budget` bytes of replay
    at once; `reads` bounds the page reads in flight across connections, and each round of
    reads gives up (TimeoutError) after `read_timeout` seconds: a stalled Redis must not hold
    a connection that waits for it."""
    async with connection.catch_up_lock:
        connection.hold_live_events()
        # A round's pages, and the frames spliced from them, beside the replayed frames still
        # queued (at most half the budget when a round starts): about `budget` in all. And
        # no page bigger than PAGE_BYTES: Redis builds each in one go, while every other
        # client's call waits.
        page_bytes = max(1, min(PAGE_BYTES, budget // (4 * len(connection.recipients))))
        readings = [_Reading(i, p) for i, p in enumerate(connection.positions)]
        replayed, gap, first = 0, False, True
        while True:
            let_go = connection.held_let_go
            size = min(page_bytes, FIRST_PAGE_BYTES) if first else page_bytes
            async with (
                asyncio.timeout(read_timeout),
                reads.any if reads else contextlib.nullcontext(),
                reads.bulk if reads and not first else contextlib.nullcontext(),
            ):
                pages = await asyncio.gather(
                    *(
                        log.replay_page(
                            connection.recipients[r.index],
                            r.after,
                            check=not r.checked,
                            max_entries=PAGE_ENTRIES,
                            max_bytes=size,
                        )
                        for r in readings
                    )
                )
            for reading, page in zip(readings, pages, strict=True):
                reading.checked = True
                if page.gap and not gap:
                    gap = True
                    connection.report_gap()
                if reading.after.epoch != page.epoch:
                    connection.adopt_epoch(reading.index, page.epoch)
                    reading.after = connection.positions[reading.index]
            last = not any(page.more for page in pages) and connection.held_let_go == let_go
            queued, later = _queue_round(connection, readings, pages, last=last)
            replayed += queued
            first = False
            if last:
                break
            await connection.wait_for_room(budget // 2)
            if connection.ending():
                return Outcome(replayed, gap)
        connection.go_live(announce=announce, later=later)
    return Outcome(replayed, gap)


def _queue_round(
    connection: ClientConnection, readings: list[_Reading], pages: list[Page], *, last: bool
) -> tuple[int, list[tuple[int, Key, bytes]]]:
    """Queue the round's entries up to its bound, merged in publish order, and move each log's
    reading on; returns how many were offered and, in the `last` round, the entries past the
    bound (for `go_live`; in other rounds they are read again)."""
    points = [page.through for page in pages if page.through is not None]
    bound: Key | None = min(points) if points else None
    merged = heapq.merge(
        *(
            [
                (key, reading.index, body)
                for key, _entry, body, tab in page.entries
                if not tab or tab == connection.client  # an event for one tab: that tab's
            ]
            for reading, page in zip(readings, pages, strict=True)
        )
    )
    offered, later = 0, []
    for key, index, body in merged:
        if bound is not None and key > bound:
            if not last:
                break
            later.append((index, key, body))
            continue
        connection.replayed(index, key, body)
        offered += 1
    for reading, page in zip(readings, pages, strict=True):
        if page.scanned is None:
            continue
        reached = page.scanned if bound is None else min(page.scanned, bound)
        if reached > reading.after.key:
            after = reading.after
            reading.after = Position(after.kind, after.epoch, reached)
    return offered, later
