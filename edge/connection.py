"""One WebSocket's delivery state: its position in each recipient's log, its bounded send
buffer, and the switch from replay to live.

The hub fans each live event out to every addressed connection without blocking: a
connection with nothing queued whose socket takes data gets the event's frame written to its
socket at once (see `edge.frame_writer`); otherwise the frame joins the connection's buffer,
which its own writer task drains to the socket. A slow client therefore only fills its own
buffer. When that buffer is full, a newer `ui_update` with the same coalesce key replaces
the one still waiting; anything else closes the connection with 1013 so the client resumes
with `since`, and nothing is silently dropped.

Each frame's `id` is the connection's cursor after that frame (see `realtime.frames`): the
event's body is shared by every receiver and only the cursor in front is the connection's.

While a connection catches up from the logs (on connect, and after the edge lost a Redis
node; `edge.catch_up` reads the pages), live events are held aside and, once the replay
is queued, released unless the replay already had them. A live event at or before the
connection's position in its log is a copy of one it was sent, by the replay (whose reply may
overtake the live feed, which travels on another Redis connection) or live: it is dropped,
so nothing arrives twice. What is held is bounded too: past `capacity` events the held ones
are let go, since every one of them is in the logs, and the catch-up reads on for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from core.security import Identity
from edge import telemetry
from edge.close_codes import CloseCode
from edge.frame_writer import FrameWriter, text_frame
from edge.wakeups import Signal
from realtime.frames import Key, Position, gap_frame, ready_frame, splice
from realtime.recipients import Recipient

Held = tuple[int, Position, bytes, str, bytes]  # (recipient index, event, id, coalesce, body)


class ClientConnection:
    """Delivery state of one WebSocket or SSE stream; the endpoint owns the socket, the hub
    feeds this.

    A process holds tens of thousands of these for hours, so it keeps no per-connection
    object it does not need while idle: slots rather than a dict, a list rather than a deque
    (which allocates a block up front), and a `Signal` rather than an asyncio.Event.
    """

    __slots__ = (
        "_changed", "_held", "_live_queued", "_outbox", "_parts", "_replayed_bytes", "capacity",
        "catch_up_lock", "client", "close_code", "encode", "gone", "held_let_go", "identity",
        "positions",
        "recipients", "since", "wire",
    )  # fmt: skip

    def __init__(
        self,
        identity: Identity,
        recipients: tuple[Recipient, ...],
        positions: list[Position],
        capacity: int,
        wire: FrameWriter | None = None,
        *,
        since: str | None = None,
        client: str | None = None,
        encode: Callable[[bytes], bytes] = text_frame,
    ) -> None:
        self.identity = identity
        self.client = client  # the browser tab that opened it (`client=`), if it said
        self.recipients = recipients
        self.positions = positions  # one per recipient, in the same order
        self._parts = [p.component().encode() for p in positions]
        self.since = since  # what the client asked to resume from, if anything
        self.capacity = capacity
        self.wire = wire  # the socket's direct writer, when its server offers one
        self.encode = encode  # a frame's bytes on the wire: a WebSocket frame, an SSE message
        self.close_code: CloseCode | None = None
        self.gone = False  # the peer went away: nobody to send frames or a close code to
        # (coalesce key, frame, is_live); replayed frames are bounded by the log's retention
        # and do not count against the live capacity.
        self._outbox: list[tuple[str, bytes, bool]] = []
        self._live_queued = 0
        self._replayed_bytes = 0  # of replayed frames in the outbox: the catch-up's budget
        self._held: list[Held] | None = []  # live events during a catch-up
        self.held_let_go = 0  # times held events were let go (the logs have them)
        self._changed = Signal()  # wakes the writer
        self.catch_up_lock = asyncio.Lock()  # one replay at a time, each from the positions

    @property
    def cursor(self) -> str:
        """The connection's whole resume cursor, its user's position first."""
        return self._cursor(0).decode()

    # -- fed by the hub ---------------------------------------------------------------

    def offer(
        self, index: int, event: Position, event_id: bytes, coalesce_key: str, body: bytes
    ) -> None:
        """A live event for recipient `index`: written straight to the socket when nothing
        is queued ahead of it, else queued; dropped if the connection has it already."""
        if self._held is not None:
            if len(self._held) >= self.capacity:
                self._held = []  # each is in its log, where the catch-up will read it
                self.held_let_go += 1
            self._held.append((index, event, event_id, coalesce_key, body))
            return
        if not self._advance(index, event, event_id):
            return
        payload = splice(self._cursor(index), body)
        if (
            self._outbox
            or self.close_code is not None
            or self.wire is None
            or not self.wire.write_frame(self.encode(payload))
        ):
            self._enqueue_live(payload, coalesce_key)

    def hold_live_events(self) -> None:
        """Start a catch-up: keep live events aside until `go_live`."""
        if self._held is None:
            self._held = []

    @property
    def catching_up(self) -> bool:
        return self._held is not None

    # -- fed by the catch-up (edge.catch_up) ----------------------------------------

    def report_gap(self) -> None:
        """Queue `insight_gap`: events after the position the client resumes from are gone."""
        self._push(gap_frame(self.since or self.cursor))

    def adopt_epoch(self, index: int, epoch: str) -> None:
        """Recipient `index`'s log is incarnation `epoch`: a position read from the clock
        keeps its place in it; a position in another incarnation starts at its beginning."""
        position = self.positions[index]
        if position.epoch == epoch:
            return
        key = position.key if position.epoch is None else (0, 0)
        self._set(index, Position(position.kind, epoch, key))

    def replayed(self, index: int, key: Key, body: bytes) -> None:
        """Queue an event read from recipient `index`'s log, unless the connection has it."""
        position = self.positions[index]
        event = Position(position.kind, position.epoch, key)
        if self._advance(index, event, event.component().encode()):
            self._push(splice(self._cursor(index), body))

    async def wait_for_room(self, limit: int) -> None:
        """Until the replayed frames still queued take at most `limit` bytes (or the
        connection is closing): a catch-up holds no more of the logs than that."""
        while self._replayed_bytes > limit and not self.ending():
            await self._changed.wait()

    def go_live(self, *, announce: bool, later: Sequence[tuple[int, Key, bytes]] = ()) -> None:
        """End a catch-up: queue the held live events the replay did not have, merged by key
        with `later` (entries its last round read past its bound: (recipient index, key,
        body)), then (on connect) `insight_ready`, and let live events through from now on."""
        held, self._held = self._held or [], None
        if later:
            for index, key, body in later:
                position = self.positions[index]
                event = Position(position.kind, position.epoch, key)
                held.append((index, event, event.component().encode(), "", body))
            held.sort(key=lambda one: one[1].key)
        for index, event, event_id, coalesce_key, body in held:
            if self._advance(index, event, event_id):
                self._enqueue_live(splice(self._cursor(index), body), coalesce_key)
        if announce:
            self._push(ready_frame(self.cursor))
        self.since = None  # from here on, the connection's own cursor is what it resumes from

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

    async def wait_closing(self) -> None:
        """Until the connection must close or the peer is gone."""
        while not self.ending():
            await self._changed.wait()

    def ending(self) -> bool:
        """The connection must close, or its peer is gone: the writer stops."""
        return self.close_code is not None or self.gone

    def idle(self) -> bool:
        """Nothing for the writer to do: no frame to send, no close to make, the peer here."""
        return not self._outbox and not self.ending()

    def changed(self) -> asyncio.Future[None]:
        """Resolved at the next change (a frame queued, a close asked, the peer gone). The
        writer awaits it directly while `idle`: a coroutine around it would be one more frame
        held in memory for as long as the socket is idle."""
        return self._changed.wait()

    def take(self, limit: int, max_bytes: int) -> list[bytes]:
        """Remove and return frames (JSON payloads) from the buffer's head: up to `limit`,
        and no more than `max_bytes` unless the first alone is bigger."""
        outbox = self._outbox
        count, size, live_count, replayed = 0, 0, 0, 0
        for _, frame, live in outbox[:limit]:
            if count and size + len(frame) > max_bytes:
                break
            count += 1
            size += len(frame)
            if live:
                live_count += 1
            else:
                replayed += len(frame)
        head = outbox[:count]
        del outbox[:count]
        self._live_queued -= live_count
        if replayed:
            self._replayed_bytes -= replayed
            self._changed.fire()  # wakes a catch-up waiting for room
        return [frame for _, frame, _ in head]

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def unsent(self) -> list[bytes]:
        """Frames still waiting when the connection closes."""
        return [frame for _, frame, _ in self._outbox]

    # -- internals ----------------------------------------------------------------------

    def _advance(self, index: int, event: Position, event_id: bytes) -> bool:
        """Move the position in recipient `index`'s log to `event`; False if the connection
        is there or past it already (a copy of an event it was sent)."""
        position = self.positions[index]
        if event.epoch == position.epoch and event.key <= position.key:
            return False
        self.positions[index] = event
        self._parts[index] = event_id
        return True

    def _set(self, index: int, position: Position) -> None:
        self.positions[index] = position
        self._parts[index] = position.component().encode()

    def _cursor(self, first: int) -> bytes:
        """The cursor with recipient `first`'s component in front (the frame's own event)."""
        parts = self._parts
        if first == 0:
            return b"_".join(parts)
        return b"_".join([parts[first], *parts[:first], *parts[first + 1 :]])

    def _enqueue_live(self, payload: bytes, coalesce_key: str) -> None:
        if self.close_code is not None:
            return
        outbox = self._outbox
        if coalesce_key and outbox and outbox[-1][0] == coalesce_key and outbox[-1][2]:
            outbox[-1] = (coalesce_key, payload, True)
            telemetry.record_coalesced(payload)
        elif self._live_queued >= self.capacity:
            self.close(CloseCode.TRY_AGAIN_LATER)
            return
        else:
            outbox.append((coalesce_key, payload, True))
            self._live_queued += 1
        self._changed.fire()

    def _push(self, payload: bytes) -> None:
        self._outbox.append(("", payload, False))
        self._replayed_bytes += len(payload)
        self._changed.fire()
