"""The durable per-recipient event log in Redis, and the live announcement of each entry.

Appending is one script per event, over the keys of one recipient only (they share a hash
slot, see `realtime.recipients`), so an event is never in the log without being announced or
announced without being in the log, and the recipients of a Redis Cluster spread over all of
its shards. The scripts start with `#!lua` and declare no cross-slot flag, so Redis itself
refuses a key outside the recipient's slot.

Ids are the recipient's Stream entry ids, taken from the Redis clock in microseconds (see
`realtime.frames`). The log's metadata hash keeps its epoch (which incarnation of the log
this is), its newest entry id, and the newest id trimmed away by count; it lives as long as
the log (both expire EVENTS_MAX_AGE_SECONDS after the last append, or after a first read of
a log that has none), so a user who only connects costs Redis one small hash for that long.
A position is
past retention, and replay reports a gap, when an entry newer than it was trimmed, when the
log is of another epoch (the log was lost, with Redis's data or by expiry), or when the
entry it names is gone though younger than the retention (a failover promoted a replica
that never got it, so later ones may be lost too). Each entry also carries its
own expiry (at most `max_age`), after which it is not replayed; trimming by age therefore
never drops a replayable event. A position of another epoch is replayed from the new log's
start, after the gap: its key means nothing in the new log.

Replay is paged (`replay_page`): each script returns at most a page of entries and bytes, so
neither Redis nor the edge ever builds a whole log of large events in one reply, and other
recipients' appends wait behind a page at most (see `realtime.catch_up`).

Durability: with `EVENTS_MIN_REPLICAS=N`, an append is followed on the same connection by
`WAIT N`, so it returns only once N replicas hold the event (and raises `NotReplicated`
otherwise: the event may be lost in a failover; a retry with the same idempotency key is
safe). Without it, an append returns once the master has it, and a failover that loses it
is reported to the clients that had seen it as `insight_gap`. Other writes to a recipient's
slot that must survive a failover (a revocation, `realtime.presence`) go through the same
`run_durably`.

Idempotency: an append with an idempotency key remembers the id it returned under that key
(in the recipient's slot, for the log's retention); a repeat returns that id and publishes
nothing. Without a key the publisher makes one per call, kept briefly, so that a client
library that re-sends a script whose reply was lost cannot publish twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from realtime.frames import ANNOUNCEMENT_LUA, MAX_SEQ, Key, Position, entry_key
from realtime.recipients import Recipient

MAX_FRAME_BYTES = 64 * 1024  # a UI event is a notification, not a data transfer
RETRY_KEY_TTL_SECONDS = 300  # the key made for a call without one guards its retries only

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

_EPOCH_LUA = """
local function epoch_of(meta, t, ttl)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    epoch = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('HSET', meta, 'epoch', epoch)
    redis.call('PEXPIRE', meta, ttl)
  end
  return epoch
end
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
"""

# KEYS: stream, meta, idempotency (the meta key again when the call has no key).
# ARGV: channel, body, ttl_us, max_len, max_age_us, coalesce key, idempotency ttl_ms,
#       kind letter, '1' if KEYS[3] is an idempotency key, meta ttl_ms
_APPEND = (
    "#!lua\n"
    + _EPOCH_LUA
    + """
local stream, meta = KEYS[1], KEYS[2]
local remembers = ARGV[9] == '1'
if remembers then
  local first = redis.call('GET', KEYS[3])
  if first then return first end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = epoch_of(meta, t, ARGV[10])
local last = redis.call('HGET', meta, 'last')
if not last then
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if newest[1] then last = newest[1][1] end
end
local micros, seq = now, 0
if last then
  local last_us, last_seq = parse(last)
  if last_us >= now then micros, seq = last_us, last_seq + 1 end
end
local entry = string.format('%.0f-%.0f', micros, seq)
local body = ARGV[2]
local max_age = tonumber(ARGV[5])
redis.call('XADD', stream, entry, 'f', body, 'x', string.format('%.0f', now + tonumber(ARGV[3])))
local excess = redis.call('XLEN', stream) - tonumber(ARGV[4])
if excess > 0 then
  local doomed = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)
  redis.call('XTRIM', stream, 'MAXLEN', ARGV[4])
  redis.call('HSET', meta, 'trimmed', doomed[#doomed][1])
end
-- Entries past max_age are past every event's TTL too: dropping them loses nothing.
redis.call('XTRIM', stream, 'MINID', '~', string.format('%.0f-0', now - max_age))
redis.call('PEXPIRE', stream, math.floor(max_age / 1000))
redis.call('HSET', meta, 'last', entry)
redis.call('PEXPIRE', meta, ARGV[10])
local event_id = ARGV[8] .. epoch .. '.' .. entry
if remembers then redis.call('SET', KEYS[3], event_id, 'PX', ARGV[7]) end
local coalesce = ARGV[6]
redis.call('SPUBLISH', ARGV[1], """
    + ANNOUNCEMENT_LUA
    + """)
return event_id
"""
)

# KEYS: stream, meta.
# ARGV: after entry, its epoch ('' when unknown), '1' to check that the position still holds,
#       max entries, max bytes, meta ttl_ms, max_age_us
# Returns {epoch, gap (0/1), more (0/1), last entry scanned ('' if none), entry, body, ...}:
# a page of the entries after the position, in order, expired ones left out. A page stops at
# `max entries` or once it holds `max bytes` (or has scanned SCAN_FACTOR times as many
# entries), with `more` set: the next page starts after the last entry scanned. The stream is
# read a chunk at a time, so a script never holds much more than a page, however big the log.
_CLOCK_SEQ = f"-{MAX_SEQ}"  # the sequence part of a position read from the clock
REPLAY_CHUNK = 32  # entries read from the stream per XRANGE
SCAN_FACTOR = 4  # expired entries skipped count too, so that no page scans without end

_REPLAY = (
    "#!lua\n"
    + _EPOCH_LUA
    + """
local stream, meta = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = epoch_of(meta, t, ARGV[6])
local after, after_epoch = ARGV[1], ARGV[2]
local gap = 0
if after_epoch ~= '' and after_epoch ~= epoch then
  -- Another incarnation of the log (lost with Redis's data, or expired): whatever the
  -- position named is gone, and this log is read from its start.
  gap = 1
  after = '0-0'
elseif after_epoch ~= '' and ARGV[3] == '1' then
  local trimmed = redis.call('HGET', meta, 'trimmed')
  if trimmed and less(after, trimmed) then gap = 1 end
  -- The entry the client saw last must still be there if it is younger than max_age (the
  -- age trim and the stream's expiry only drop older ones): if it is not, the log lost it
  -- (a failover promoted a replica that never got it) and maybe more. A position read
  -- from the clock (sequence 2^64-1, see start_position) names no entry.
  local micros = parse(after)
  local from_clock = string.sub(after, -"""
    + str(len(_CLOCK_SEQ))
    + """) == '"""
    + _CLOCK_SEQ
    + """'
  if gap == 0 and not from_clock and micros >= now - tonumber(ARGV[7])
      and #redis.call('XRANGE', stream, after, after) == 0 then
    gap = 1
  end
end
local out = {epoch, gap, 0, ''}
local max_entries, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local taken, bytes, scanned = 0, 0, 0
local start = '(' .. after
while true do
  local chunk = redis.call('XRANGE', stream, start, '+', 'COUNT', """
    + str(REPLAY_CHUNK)
    + """)
  for _, entry in ipairs(chunk) do
    local fields = entry[2]
    local frame, expires = nil, 0
    for j = 1, #fields, 2 do
      if fields[j] == 'f' then frame = fields[j + 1] end
      if fields[j] == 'x' then expires = tonumber(fields[j + 1]) end
    end
    scanned = scanned + 1
    out[4] = entry[1]
    if frame and expires >= now then
      out[#out + 1] = entry[1]
      out[#out + 1] = frame
      taken = taken + 1
      bytes = bytes + #frame
    end
    if taken >= max_entries or bytes >= max_bytes or scanned >= """
    + str(SCAN_FACTOR)
    + """ * max_entries then
      out[3] = 1
      return out
    end
  end
  if #chunk < """
    + str(REPLAY_CHUNK)
    + """ then return out end
  start = '(' .. chunk[#chunk][1]
end
"""
)


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of each recipient's history the log keeps for replay."""

    max_len: int
    max_age_seconds: int


@dataclass(frozen=True, slots=True)
class Durability:
    """How many replicas must hold an event before its append returns (0: the master)."""

    min_replicas: int = 0
    timeout_ms: int = 1000


class NotReplicated(redis.RedisError):
    """Fewer replicas than EVENTS_MIN_REPLICAS confirmed the event in time."""


_REDIRECTS = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)
# A slot that is moving (a migration, a failover): redis-py's cluster client follows
# redirects a bounded number of times, quickly, then raises ClusterError ("TTL exhausted"),
# and a script whose keys a migration has split gets TRYAGAIN until they are together again.
_MOVING = (*_REDIRECTS, redis.exceptions.ClusterError)
RIDE_THROUGH_SECONDS = 2.0  # how long a write keeps trying a slot that is moving
T = TypeVar("T")


def ride_through(call: Callable[[], T], on_moved: Callable[[], object] = lambda: None) -> T:
    """`call()`, tried again while its slot is moving, for RIDE_THROUGH_SECONDS at most
    (every write of Insight is safe to repeat: see "Idempotency"). `on_moved` runs before
    each new try (to re-read the slot map)."""
    deadline = time.monotonic() + RIDE_THROUGH_SECONDS
    delay = 0.01
    while True:
        try:
            return call()
        except _MOVING:
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, 0.25)
        on_moved()


async def ride_through_async(
    call: Callable[[], Awaitable[T]],
    on_moved: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """`ride_through` for asyncio code."""
    deadline = time.monotonic() + RIDE_THROUGH_SECONDS
    delay = 0.01
    while True:
        try:
            return await call()
        except _MOVING:
            if time.monotonic() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 0.25)
        if on_moved is not None:
            await on_moved()


@dataclass(frozen=True, slots=True)
class Page:
    """A page of one recipient's log after a position: the log's epoch, whether events after
    the position are gone, the entries that follow, in order, as (key, entry id, body), and
    whether more may follow the last entry it scanned (`scanned`, None if it scanned none)."""

    epoch: str
    gap: bool
    entries: list[tuple[Key, str, bytes]]
    more: bool = False
    scanned: Key | None = None


def start_position(kind: str, server_time: tuple[int, int]) -> Position:
    """The position just before anything appended after the clock read `server_time`
    (Redis TIME: seconds, microseconds): where a connection without `since` starts."""
    micros = server_time[0] * 1_000_000 + server_time[1]
    return Position(kind, None, (micros - 1, MAX_SEQ))


def _append_call(
    recipient: Recipient,
    body: str,
    ttl_seconds: float,
    retention: Retention,
    coalesce_key: str | None,
    idempotency_key: str | None,
) -> tuple[list[str], list[str | int]]:
    if not body.startswith('{"'):
        raise ValueError("an event body must be a JSON object")
    if len(body) > MAX_FRAME_BYTES // 4 and (size := len(body.encode())) > MAX_FRAME_BYTES:
        raise ValueError(f"an event may be at most {MAX_FRAME_BYTES} bytes, got {size}")
    if not 0 < ttl_seconds <= retention.max_age_seconds:
        raise ValueError(
            f"ttl must be between 0 and the log's retention ({retention.max_age_seconds} s), "
            f"got {ttl_seconds}"
        )
    if coalesce_key is not None and ("\n" in coalesce_key or not coalesce_key):
        raise ValueError("coalesce_key must be a non-empty single line")
    if idempotency_key is None:
        key, ttl_ms = f"retry:{uuid.uuid4().hex}", RETRY_KEY_TTL_SECONDS * 1000
    elif _IDEMPOTENCY_KEY.match(idempotency_key):
        key, ttl_ms = f"key:{idempotency_key}", retention.max_age_seconds * 1000
    else:
        raise ValueError("idempotency_key must be 1-200 printable ASCII characters, no spaces")
    keys = [recipient.stream_key, recipient.meta_key, recipient.idempotency_key(key)]
    args: list[str | int] = [
        recipient.live_channel,
        body,
        int(ttl_seconds * 1_000_000),
        retention.max_len,
        retention.max_age_seconds * 1_000_000,
        coalesce_key or "",
        ttl_ms,
        recipient.letter,
        "1",
        retention.max_age_seconds * 1000,  # the metadata lives as long as the log
    ]
    return keys, args


class EventLog:
    """Appends events from synchronous code (Celery tasks, scripts) over a redis-py client
    (a single Redis or a RedisCluster)."""

    def __init__(
        self,
        client: redis.Redis | redis.RedisCluster,
        retention: Retention,
        durability: Durability = Durability(),
    ) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self.retention = retention
        self.durability = durability

    def append(
        self,
        recipient: Recipient,
        body: str,
        *,
        ttl_seconds: float,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store and announce one event; returns its id (the first one's, for a repeated
        idempotency key). Redis errors propagate."""
        keys, args = _append_call(
            recipient, body, ttl_seconds, self.retention, coalesce_key, idempotency_key
        )
        if not self.durability.min_replicas and isinstance(self.client, redis.RedisCluster):
            return self._append_on_cluster(keys, args)
        return as_text(self.run_durably(self._append, keys, args))

    def run_durably(self, script: Script, keys: list[str], args: list[str | int]) -> Any:
        """`script`'s reply, once the write it made over one recipient's `keys` is held by
        the replicas `durability` asks for (none: once the master has it); raises
        NotReplicated if fewer confirm in time. A slot that is moving is ridden through."""
        if not self.durability.min_replicas:
            return ride_through(lambda: script(keys=keys, args=args))

        def replicated() -> Any:
            pipe = self._master_of(keys[0]).pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
            reply, replicas = pipe.execute()
            return _replicated(reply, replicas, self.durability)

        return ride_through(replicated, on_moved=self._reread_slots)

    def _reread_slots(self) -> None:
        if isinstance(self.client, redis.RedisCluster):
            self.client.nodes_manager.initialize()

    def _append_on_cluster(self, keys: list[str], args: list[str | int]) -> str:
        """Straight to the master of the recipient's slot, skipping redis-py's routing of
        each call, which the producer pays for in CPU on every publish (measured:
        bench/results/design-figures.md). A slot that moved or a master that went away sends
        the call through the cluster client instead, which finds the new owner; the
        idempotency key in the call makes that repeat safe."""
        assert isinstance(self.client, redis.RedisCluster)
        try:
            return as_text(self._append(keys=keys, args=args, client=self._master_of(keys[0])))
        except (*_REDIRECTS, redis.ConnectionError, redis.TimeoutError):
            return as_text(ride_through(lambda: self._append(keys=keys, args=args)))

    def _master_of(self, key: str) -> redis.Redis:
        """A client of the master that holds `key` (for WAIT, which counts the replicas
        that have the writes of its own connection, the script's own)."""
        if isinstance(self.client, redis.RedisCluster):
            node = self.client.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self.client.get_redis_connection(node)
        return self.client


def _replicated(reply: Any, replicas: object, durability: Durability) -> Any:
    if not isinstance(replicas, int) or replicas < durability.min_replicas:
        raise NotReplicated(
            f"{replicas} of {durability.min_replicas} replicas confirmed the write in "
            f"{durability.timeout_ms} ms"
        )
    return reply


class AsyncEventLog:
    """The asyncio twin of EventLog, plus the reads the edge needs to replay."""

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.RedisCluster,
        retention: Retention,
        *,
        concurrency: int | None = None,
        durability: Durability = Durability(),
    ) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self._replay = client.register_script(_REPLAY)
        self.retention = retention
        self.durability = durability
        self._masters: dict[str, redis.asyncio.Redis] = {}
        # redis-py's cluster client refuses a call when a node's pool is full, where a
        # BlockingConnectionPool would make it wait: at most this many reads at once.
        self._reads = asyncio.Semaphore(concurrency) if concurrency else None

    async def append(
        self,
        recipient: Recipient,
        body: str,
        *,
        ttl_seconds: float,
        coalesce_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store and announce one event; returns its id. Redis errors propagate."""
        keys, args = _append_call(
            recipient, body, ttl_seconds, self.retention, coalesce_key, idempotency_key
        )
        return as_text(await self.run_durably(self._append, keys, args))

    async def run_durably(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> Any:
        """`EventLog.run_durably` for asyncio."""
        if not self.durability.min_replicas:
            return await ride_through_async(lambda: script(keys=keys, args=args))

        async def replicated() -> Any:
            pipe = self._master_of(keys[0]).pipeline(transaction=False)
            await script(keys=keys, args=args, client=pipe)
            pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
            reply, replicas = await pipe.execute()
            return _replicated(reply, replicas, self.durability)

        return await ride_through_async(replicated, on_moved=self._reread_slots)

    async def _reread_slots(self) -> None:
        if isinstance(self.client, redis.asyncio.RedisCluster):
            await self.client.nodes_manager.initialize()

    def _master_of(self, key: str) -> redis.asyncio.Redis:
        """`EventLog._master_of` for asyncio: one client per master, made on first use."""
        if not isinstance(self.client, redis.asyncio.RedisCluster):
            return self.client
        node = self.client.get_node_from_key(key)
        assert node is not None
        master = self._masters.get(node.name)
        if master is None:
            pool = redis.asyncio.ConnectionPool(
                connection_class=node.connection_class, **node.connection_kwargs
            )
            master = self._masters[node.name] = redis.asyncio.Redis(connection_pool=pool)
        return master

    async def server_time(self) -> tuple[int, int]:
        """Redis's clock as (seconds, microseconds); on a cluster, the earliest of its
        masters' clocks, so that no master appends after it with an older id."""
        if isinstance(self.client, redis.asyncio.RedisCluster):
            async with self._reads or contextlib.nullcontext():
                return await self._cluster_time(self.client)
        seconds, micros = await self.client.time()
        return int(seconds), int(micros)

    @staticmethod
    async def _cluster_time(client: redis.asyncio.RedisCluster) -> tuple[int, int]:
        # With several target nodes, redis-py answers {node name: (seconds, micros)}.
        replies = cast(
            dict[str, tuple[int, int]],
            await client.time(target_nodes=redis.asyncio.RedisCluster.PRIMARIES),
        )
        return min((int(s), int(us)) for s, us in replies.values())

    async def replay_page(
        self,
        recipient: Recipient,
        after: Position,
        *,
        check: bool,
        max_entries: int,
        max_bytes: int,
    ) -> Page:
        """A page of one recipient's log after `after`: at most `max_entries` entries, and
        about `max_bytes` (a page stops at the entry that reaches it). With `check`, whether
        events after the position are gone (check the first page of a catch-up only: a later
        page starts where the previous one stopped, which may be no entry of this log)."""
        async with self._reads or contextlib.nullcontext():
            reply = await self._replay(
                keys=[recipient.stream_key, recipient.meta_key],
                args=[
                    after.entry,
                    after.epoch or "",
                    "1" if check else "0",
                    max_entries,
                    max_bytes,
                    self.retention.max_age_seconds * 1000,
                    self.retention.max_age_seconds * 1_000_000,
                ],
            )
        epoch, gap, more, scanned, *flat = reply
        entries = []
        for index in range(0, len(flat), 2):
            entry = as_text(flat[index])
            entries.append((entry_key(entry), entry, bytes(flat[index + 1])))
        return Page(
            epoch=as_text(epoch),
            gap=bool(gap),
            entries=entries,
            more=bool(more),
            scanned=entry_key(as_text(scanned)) if scanned else None,
        )


def as_text(value: object) -> str:
    """A Redis reply (bytes, or already text) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
