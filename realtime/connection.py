"""One WebSocket's delivery state: its cursor, its bounded send buffer, and the switch from
replay to live.

The hub fans each live event out to every addressed connection without blocking: a
connection with nothing queued whose socket takes data gets the event's encoded frame written
to its socket at once (see `realtime.wire`); otherwise the frame joins the connection's
buffer, which its own writer task drains to the socket. A slow client therefore only fills
its own buffer. When that buffer is full, a newer `ui_update` with the same coalesce key
replaces the one still waiting; anything else closes the connection with 1013 so the client
resumes with `since`, and nothing is silently dropped.

While a connection catches up from the log (on connect, and after the edge lost Redis),
live events are held aside and, once the replay is queued, only those newer than the
replay's head are released: the two meet without a gap and without a duplicate. The replay
and the live feed travel on different Redis connections, so an event in the replay may
still have its live copy on the way when the replay is done: until the first live event
newer than the replay's head arrives (the feed is in publish order), older ones are dropped.
"""

from __future__ import annotations

import asyncio

from core.security import Identity
from realtime import metrics
from realtime.channels import Recipient, cursor_key
from realtime.eventlog import Replay
from realtime.protocol import CloseCode, gap_frame, ready_frame
from realtime.wire import FrameWriter, Signal


class ClientConnection:
    """Delivery state of one WebSocket; the endpoint owns the socket, the hub feeds this.

    A process holds tens of thousands of these for hours, so it keeps no per-connection
    object it does not need while idle: slots rather than a dict, a list rather than a deque
    (which allocates a block up front), and a `Signal` rather than an asyncio.Event.
    """

    __slots__ = (
        "_changed", "_fence", "_held", "_live_queued", "_outbox", "capacity", "catch_up_lock",
        "close_code", "cursor", "gone", "identity", "recipients", "wire",
    )  # fmt: skip

    def __init__(
        self,
        identity: Identity,
        recipients: tuple[Recipient, ...],
        since: str | None,
        capacity: int,
        wire: FrameWriter | None = None,
    ) -> None:
        self.identity = identity
        self.recipients = recipients
        self.cursor = since
        self.capacity = capacity
        self.wire = wire  # the socket's direct writer, when its server offers one
        self.close_code: CloseCode | None = None
        self.gone = False  # the peer went away: nobody to send frames or a close code to
        # (coalesce key, frame, is_live); replayed frames are bounded by the log's retention
        # and do not count against the live capacity.
        self._outbox: list[tuple[str, str, bool]] = []
        self._live_queued = 0
        self._held: list[tuple[str, str, str]] | None = []  # live frames during catch-up
        self._fence: tuple[int, int] | None = None  # the last replay's head, until passed
        self._changed = Signal()  # wakes the writer
        self.catch_up_lock = asyncio.Lock()  # one replay at a time, each from the last cursor

    # -- fed by the hub ---------------------------------------------------------------

    def offer(self, event_id: str, frame: str, coalesce_key: str, encoded: bytes) -> None:
        """A live event addressed to this connection; `encoded` is `frame` as a WebSocket
        frame, written straight to the socket when nothing is queued ahead of it."""
        if self._held is not None:
            self._held.append((event_id, frame, coalesce_key))
            return
        if self._fence is not None:
            if cursor_key(event_id) <= self._fence:
                return  # already replayed: its live copy lagged behind the replay
            self._fence = None
        if (
            not self._outbox
            and self.close_code is None
            and self.wire is not None
            and self.wire.write_frame(encoded)
        ):
            self.cursor = event_id
        else:
            self._enqueue_live(event_id, frame, coalesce_key)

    def hold_live_events(self) -> None:
        """Start a catch-up: keep live events aside until `resume_from` has run."""
        if self._held is None:
            self._held = []

    @property
    def catching_up(self) -> bool:
        return self._held is not None

    def resume_from(self, replay: Replay, *, announce: bool) -> None:
        """Queue what the log replayed, then the held live events newer than its head."""
        since = self.cursor
        if replay.gap and since is not None:
            self._push(gap_frame(since), "", live=False)
        for frame in replay.frames:
            self._push(frame, "", live=False)
        head = replay.head
        if since is None or cursor_key(head) > cursor_key(since):
            self.cursor = head
        held, self._held = self._held or [], None
        last = self._fence = cursor_key(head)
        for event_id, frame, coalesce_key in held:
            if cursor_key(event_id) > last:
                self._fence = None
                self._enqueue_live(event_id, frame, coalesce_key)
        if announce and self.cursor is not None:
            self._push(ready_frame(self.cursor), "", live=False)

    def close(self, code: CloseCode) -> None:
        """Ask the writer to close the socket with `code` once it wakes."""
        if self.close_code is None:
            self.close_code = code
        self._changed.fire()

    def hang_up(self) -> None:
        """The peer is gone: stop the writer, which has nobody left to write to."""
        self.gone = True
        self._changed.fire()

    # -- drained by the endpoint's writer ----------------------------------------------

    async def wait(self) -> bool:
        """Wait until there are frames to send (True), or the connection must close (see
        close_code) or the peer is gone (False)."""
        while not self._outbox and self.close_code is None and not self.gone:
            await self._changed.wait()
        return self.close_code is None and not self.gone

    def take(self, limit: int) -> list[str]:
        """Remove and return up to `limit` frames from the head of the buffer."""
        head = self._outbox[:limit]
        del self._outbox[:limit]
        self._live_queued -= sum(live for _, _, live in head)
        return [frame for _, frame, _ in head]

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def unsent(self) -> list[str]:
        """Frames still waiting when the connection closes."""
        return [frame for _, frame, _ in self._outbox]

    # -- internals ----------------------------------------------------------------------

    def _enqueue_live(self, event_id: str, frame: str, coalesce_key: str) -> None:
        if self.close_code is not None:
            return
        outbox = self._outbox
        if coalesce_key and outbox and outbox[-1][0] == coalesce_key and outbox[-1][2]:
            outbox[-1] = (coalesce_key, frame, True)
            metrics.record_coalesced()
        elif self._live_queued >= self.capacity:
            self.close(CloseCode.TRY_AGAIN_LATER)
            return
        else:
            outbox.append((coalesce_key, frame, True))
            self._live_queued += 1
        self.cursor = event_id
        self._changed.fire()

    def _push(self, frame: str, coalesce_key: str, *, live: bool) -> None:
        self._outbox.append((coalesce_key, frame, live))
        self._changed.fire()
