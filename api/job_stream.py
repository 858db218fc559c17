"""GET /jobs/{id}/events: one job's own events as Server-Sent Events, for an API client that
follows the job it submitted (curl, a mobile app, a server), without an SDK or a WebSocket.

The job's events are in its user's log, the only record of them, so the stream reads that log
in order, a page at a time: from its start, or from the event named by `Last-Event-ID`. It
sends the frames whose `jobId` is the job's, each with its event id as `id:`, and keeps the
others to itself. The user's live channel is only a doorbell: an announcement (or a channel
restored after an outage) makes the stream read on from where it stands, and a quiet stream
reads again at every keep-alive, so an announcement missed during a reconnect delays an event
by one keep-alive at most and never loses it. Reading the log, never a live message's body, is
what makes the stream exactly-once and in order without the edge's merge of replay and live.

A stream ends once its job has finished and announced how (the `notified` mark, set after the
job's last events went out: its terminal job_progress, toast, redirect or modal) and the log has
been read through after that: a finished job replays what retention still holds and ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from realtime import sse
from realtime.broker import LiveFeed, LogStore
from realtime.frames import Position, gap_frame, parse_cursor, splice
from realtime.recipients import Recipient

logger = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0  # a comment at least this often: proxies keep the stream open
PAGE_ENTRIES = 100
PAGE_BYTES = 256 * 1024
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


class Doorbells:
    """The live feed's listener: each announcement on a channel rings that channel's streams."""

    def __init__(self) -> None:
        self._bells: dict[bytes, set[asyncio.Event]] = {}

    def add(self, channel: bytes, bell: asyncio.Event) -> None:
        self._bells.setdefault(channel, set()).add(bell)

    def discard(self, channel: bytes, bell: asyncio.Event) -> None:
        bells = self._bells.get(channel)
        if bells is not None:
            bells.discard(bell)
            if not bells:
                del self._bells[channel]

    def on_message(self, channel: bytes, data: bytes) -> None:
        for bell in self._bells.get(channel, ()):
            bell.set()

    def on_lost(self, channels: set[bytes]) -> None:
        """Nothing to hold: a stream reads the log again at its next keep-alive anyway."""

    def on_restored(self, channels: set[bytes]) -> None:
        for channel in channels:
            self.on_message(channel, b"")


@dataclass
class JobFeed:
    """The log and the live channels a process's job streams read (one broker per process)."""

    log: LogStore
    live: LiveFeed
    doorbells: Doorbells


def resume_position(last_event_id: str | None) -> Position | None:
    """The position in the user's log a `Last-Event-ID` names (None: from the log's start);
    raises sse.BadResume for an id no job stream sent."""
    point = sse.resume_point(last_event_id, None)
    if point is None:
        return None
    field, value = point
    positions = parse_cursor(value)
    if positions is None or set(positions) != {"u"}:
        raise sse.BadResume(field, "is not the id of a job stream's event")
    return positions["u"]


async def job_events(
    feed: JobFeed,
    user_id: str,
    job_id: str,
    after: Position | None,
    announced: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """The stream's bytes: the job's events after `after`, then live, until the job has
    announced how it ended (`announced`) and the log is read through after that."""
    user = Recipient.user(user_id)
    channel = user.live_channel.encode()
    bell = asyncio.Event()
    feed.doorbells.add(channel, bell)
    waiter = feed.live.hold(channel)
    try:
        if waiter is not None:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                await waiter
        position = after or Position("u", None, (0, 0))
        first, ending = True, False
        marker = f'"jobId":{json.dumps(job_id)}'.encode()
        while True:
            bell.clear()
            page = await feed.log.replay_page(
                user, position, check=first, max_entries=PAGE_ENTRIES, max_bytes=PAGE_BYTES
            )
            if page.gap and after is not None:
                yield sse.message(gap_frame(after.component()))
            if position.epoch != page.epoch:  # the log's start, or a position of another log
                position = Position("u", page.epoch, (0, 0))
            first = False
            for key, _entry, body, _tab in page.entries:
                position = Position("u", page.epoch, key)
                if marker in body and json.loads(body).get("jobId") == job_id:
                    event_id = position.component().encode()
                    yield sse.message(splice(event_id, body), event_id=event_id)
            if page.scanned is not None and page.scanned > position.key:
                position = Position("u", page.epoch, page.scanned)
            if page.more:
                continue
            if ending:
                return
            if await announced():  # its last events are in the log now: read through once more
                ending = True
                continue
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await bell.wait()
            except TimeoutError:
                yield sse.KEEPALIVE
    finally:
        feed.doorbells.discard(channel, bell)
        feed.live.release(channel)
