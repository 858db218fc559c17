"""The broker in memory: the seam's three parts in one process, for fast tests of the edge's
delivery state machine (replay merge, dedupe, coalescing, the 1013 policy, catch-up races)
without Redis. It keeps what the Redis scripts keep, the same way: per-recipient logs with an
epoch, ids from a microsecond clock, trimming by count, per-event expiry, idempotency keys,
paged replay with the same gap rules; presence counts per edge with the cap and revocation
marks. It is not a test of the guarantees, which hold only where real Redis processes are
(the suites that start them).

Announcements reach the listener on the next turn of the event loop, as a message from Redis
would, never inside the append. `interrupt` and `restore` play a node lost and found again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from realtime.broker import Admission, Entry, Listener, Marks, Stamp
from realtime.broker.log_calls import Page, Retention, check_event
from realtime.frames import MAX_SEQ, REVOKE_ANNOUNCEMENT, Key, Position, announcement
from realtime.options import PublishOptions
from realtime.recipients import Recipient

Clock = Callable[[], int]  # microseconds since the epoch
RETENTION = Retention(max_len=1000, max_age_seconds=3600)  # the settings' defaults


def _micros() -> int:
    return time.time_ns() // 1000


@dataclass
class _Log:
    epoch: str
    entries: list[tuple[Key, bytes, int, str]] = field(default_factory=list)  # + expires, tab
    last: Key | None = None
    trimmed: Key | None = None


class MemoryLog:
    """The `LogStore`: each recipient's log, as `log_calls` keeps it in Redis."""

    def __init__(
        self,
        retention: Retention,
        live: MemoryLiveFeed,
        clock: Clock,
        tab_connected: Callable[[str, str], bool] = lambda user, tab: False,
    ) -> None:
        self.retention = retention
        self._live = live
        self._clock = clock
        self._tab_connected = tab_connected
        self._logs: dict[str, _Log] = {}
        self._remembered: dict[tuple[str, str], str] = {}  # (recipient, key) -> event id
        # (recipient, coalesce key) -> the newest version published under it, its id, and
        # when that is forgotten (µs, as Redis's key expires with the log's retention)
        self._versions: dict[tuple[str, str], tuple[int, str, int]] = {}

    def forget(self, recipient: Recipient) -> None:
        """Lose the recipient's log, as a Redis that lost its data or let it expire."""
        self._logs.pop(str(recipient), None)
        for versioned in [v for v in self._versions if v[0] == str(recipient)]:
            del self._versions[versioned]

    async def append(
        self, recipient: Recipient, body: str, ttl: float, options: PublishOptions
    ) -> str:
        check_event(recipient, body, ttl, options, self.retention)
        key = options.idempotency_key
        if key is not None and (first := self._remembered.get((str(recipient), key))):
            return first
        versioned = (str(recipient), options.coalesce_key or "")
        newest = self._versions.get(versioned)
        if (
            options.version is not None
            and newest is not None
            and newest[0] > options.version
            and newest[2] > self._clock()
        ):
            return newest[1]
        now = self._clock()
        log = self._log(recipient, now)
        entry: Key = (now, 0)
        if log.last is not None and log.last[0] >= now:
            entry = (log.last[0], log.last[1] + 1)
        tab = options.client or ""
        if tab and not self._tab_connected(recipient.ident, tab):
            tab = ""  # the tab is gone: every tab of the user gets it
        log.entries.append((entry, body.encode(), now + int(ttl * 1_000_000), tab))
        log.last = entry
        excess = len(log.entries) - self.retention.max_len
        if excess > 0:
            log.trimmed = log.entries[excess - 1][0]
            del log.entries[:excess]
        event_id = f"{recipient.letter}{log.epoch}.{entry[0]}-{entry[1]}"
        if key is not None:
            self._remembered[(str(recipient), key)] = event_id
        if options.version is not None:
            forgotten = now + self.retention.max_age_seconds * 1_000_000
            self._versions[versioned] = (options.version, event_id, forgotten)
        data = announcement(options.coalesce_key or "", event_id, body, tab)
        self._live.announce(recipient.live_channel.encode(), data)
        return event_id

    async def replay_page(
        self,
        recipient: Recipient,
        after: Position,
        *,
        check: bool,
        max_entries: int,
        max_bytes: int,
    ) -> Page:
        now = self._clock()
        log = self._log(recipient, now)
        start, gap = after.key, False
        if after.epoch is not None and after.epoch != log.epoch:
            start, gap = (0, 0), True  # another incarnation: read this one from its start
        elif after.epoch is not None and check:
            gap = log.trimmed is not None and after.key < log.trimmed
            named = after.key[1] != MAX_SEQ  # a position from the clock names no entry
            young = after.key[0] >= now - self.retention.max_age_seconds * 1_000_000
            if not gap and named and young:
                gap = all(entry[0] != after.key for entry in log.entries)
        entries: list[tuple[Key, str, bytes, str]] = []
        size, scanned, last = 0, 0, None
        for key, body, expires, tab in log.entries:
            if key <= start:
                continue
            scanned, last = scanned + 1, key
            if expires >= now:
                entries.append((key, f"{key[0]}-{key[1]}", body, tab))
                size += len(body)
            if len(entries) >= max_entries or size >= max_bytes or scanned >= 4 * max_entries:
                return Page(log.epoch, gap, entries, more=True, scanned=last, through=last)
        through = max(last or start, (now - 1, MAX_SEQ))  # a later append is past the clock
        return Page(log.epoch, gap, entries, more=False, scanned=last, through=through)

    async def server_time(self) -> tuple[int, int]:
        return divmod(self._clock(), 1_000_000)

    def _log(self, recipient: Recipient, now: int) -> _Log:
        log = self._logs.get(str(recipient))
        if log is None:
            log = self._logs[str(recipient)] = _Log(epoch=str(now))
        return log


class MemoryLiveFeed:
    """The `LiveFeed`: held channels, announced to the listener on the next loop turn."""

    def __init__(self) -> None:
        self._listener: Listener | None = None
        self._held: dict[bytes, int] = {}
        self._paused: set[bytes] = set()  # interrupted: announcements are lost, as live ones

    def start(self, listener: Listener) -> None:
        self._listener = listener

    def hold(self, channel: bytes) -> asyncio.Future[None] | None:
        self._held[channel] = self._held.get(channel, 0) + 1
        return None  # subscribed at once

    def release(self, channel: bytes) -> None:
        count = self._held.get(channel, 0) - 1
        if count > 0:
            self._held[channel] = count
        else:
            self._held.pop(channel, None)

    @property
    def healthy(self) -> bool:
        return not self._paused

    @property
    def channel_count(self) -> int:
        return len(self._held)

    @property
    def reconnects(self) -> int:
        return 0

    async def close(self) -> None:
        self._held.clear()

    def announce(self, channel: bytes, data: bytes) -> None:
        if channel in self._held and channel not in self._paused and self._listener:
            asyncio.get_running_loop().call_soon(self._listener.on_message, channel, data)

    def interrupt(self, channels: set[bytes]) -> None:
        """The node of these channels is lost: what is announced meanwhile never arrives."""
        self._paused |= channels
        if self._listener is not None:
            self._listener.on_lost(channels & set(self._held))

    def restore(self, channels: set[bytes]) -> None:
        """The node is back: the listener catches the channels' connections up."""
        self._paused -= channels
        if self._listener is not None:
            self._listener.on_restored(channels & set(self._held))


class MemoryPresence:
    """The `PresenceStore`: counts per edge, the cap and revocation marks."""

    def __init__(self, live: MemoryLiveFeed, clock: Clock) -> None:
        self._live = live
        self._clock = clock
        self._counts: dict[Entry, dict[str, int]] = {}  # entry -> edge -> count
        self._seqs: dict[tuple[Entry, str], int] = {}  # (entry, edge) -> seq of its last write
        self._marks: dict[str, int] = {}

    def _put(self, entry: Entry, count: int, by: Stamp) -> None:
        """Write one count, unless a newer write of the same edge is there (as the script)."""
        if self._seqs.get((entry, by.edge), -1) > by.seq:
            return
        self._seqs[(entry, by.edge)] = by.seq
        self._counts.setdefault(entry, {})[by.edge] = count

    async def enter(
        self,
        user_id: str,
        issued_at: float | None,
        count: int,
        cap: int,
        by: Stamp,
        tab: tuple[str, int] | None = None,
    ) -> Admission:
        edge = by.edge
        mark = self._marks.get(user_id)
        if mark is not None and (issued_at is None or int(issued_at) <= mark):
            return Admission.REVOKED
        edges = self._counts.get(Entry(user_id), {})
        others = sum(n for other, n in edges.items() if other != edge)
        if cap > 0 and others + count > cap:
            return Admission.OVER_CAP
        self._put(Entry(user_id), count, by)
        if tab is not None:
            self._put(Entry(user_id, tab=tab[0]), tab[1], by)
        return Admission.ADMITTED

    async def put(self, entries: dict[Entry, int], by: Stamp) -> Marks:
        for entry, count in entries.items():
            self._put(entry, count, by)
        users = {entry.user for entry in entries if entry.business is None and entry.tab is None}
        return [(user, self._marks[user]) for user in sorted(users) if user in self._marks]

    async def revocation_mark(self, user_id: str) -> int | None:
        return self._marks.get(user_id)

    def connections(self, user_id: str) -> int:
        return sum(self._counts.get(Entry(user_id), {}).values())

    def tab_connected(self, user_id: str, tab: str) -> bool:
        return any(self._counts.get(Entry(user_id, tab=tab), {}).values())

    def revoke(self, user_id: str) -> int:
        """Refuse the user's tokens issued up to now and announce it, as `presence_calls`."""
        mark = max(self._clock() // 1_000_000, self._marks.get(user_id, 0))
        self._marks[user_id] = mark
        channel = Recipient.user(user_id).live_channel.encode()
        self._live.announce(channel, (REVOKE_ANNOUNCEMENT + str(mark)).encode())
        return mark


class MemoryTickets:
    """The `TicketStore`: tickets kept until spent or expired, by the broker's clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tickets: dict[tuple[str, str], tuple[str, int]] = {}  # -> identity, expires

    async def issue(self, user_id: str, secret: str, identity: str, ttl_ms: int) -> None:
        self._tickets[(user_id, secret)] = (identity, self._clock() + ttl_ms * 1000)

    async def spend(self, user_id: str, secret: str) -> str | None:
        identity, expires = self._tickets.pop((user_id, secret), (None, 0))
        return identity if expires > self._clock() else None


class MemoryBroker:
    """The parts over one clock (microseconds; tests may drive it)."""

    def __init__(self, retention: Retention = RETENTION, clock: Clock = _micros) -> None:
        self.live = MemoryLiveFeed()
        self.presence = MemoryPresence(self.live, clock)
        self.log = MemoryLog(retention, self.live, clock, self.presence.tab_connected)
        self.tickets = MemoryTickets(clock)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        await self.live.close()
