"""The durable per-recipient event log in Redis, and the live announcement of each entry.

Appending is one script per event, over the keys of one recipient only (they share a hash
slot, see `realtime.recipients`), so an event is never in the log without being announced or
announced without being in the log, and the recipients of a Redis Cluster spread over all of
its shards. The scripts start with `#!lua` and declare no cross-slot flag, so Redis itself
refuses a key outside the recipient's slot.

Ids are the recipient's Stream entry ids, taken from the Redis clock in microseconds (see
`realtime.frames`). The log's metadata hash keeps its epoch (which incarnation of the log
this is), its newest entry id, and the newest id trimmed away by count. A position is
past retention, and replay reports a gap, when an entry newer than it was trimmed, when the
log is of another epoch (the log was lost, with Redis's data or by expiry), or when the
entry it names is gone though younger than the retention (a failover promoted a replica
that never got it, so later ones may be lost too). Each entry also carries its
own expiry (at most `max_age`), after which it is not replayed; trimming by age therefore
never drops a replayable event.

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
import uuid
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from realtime.frames import ANNOUNCEMENT_LUA, MAX_SEQ, Key, Position, entry_key
from realtime.recipients import Recipient

MAX_FRAME_BYTES = 64 * 1024  # a UI event is a notification, not a data transfer
META_TTL_SECONDS = 7 * 24 * 3600  # a log's epoch outlives its entries by this much
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
# ARGV: since entry, since epoch ('' when unknown), limit, meta ttl_ms, max_age_us
# Returns {epoch, gap (0/1), entry, body, entry, body, ...}: entries after `since`, in order,
# expired ones left out.
_CLOCK_SEQ = f"-{MAX_SEQ}"  # the sequence part of a position read from the clock

_REPLAY = (
    "#!lua\n"
    + _EPOCH_LUA
    + """
local stream, meta = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = epoch_of(meta, t, ARGV[4])
local since, since_epoch = ARGV[1], ARGV[2]
local gap = 0
if since_epoch ~= '' then
  if since_epoch ~= epoch then
    gap = 1
  else
    local trimmed = redis.call('HGET', meta, 'trimmed')
    if trimmed and less(since, trimmed) then gap = 1 end
    -- The entry the client saw last must still be there if it is younger than max_age (the
    -- age trim and the stream's expiry only drop older ones): if it is not, the log lost it
    -- (a failover promoted a replica that never got it) and maybe more. A position read
    -- from the clock (sequence 2^64-1, see start_position) names no entry.
    local micros = parse(since)
    local from_clock = string.sub(since, -"""
    + str(len(_CLOCK_SEQ))
    + """) == '"""
    + _CLOCK_SEQ
    + """'
    if gap == 0 and not from_clock and micros >= now - tonumber(ARGV[5])
        and #redis.call('XRANGE', stream, since, since) == 0 then
      gap = 1
    end
  end
end
local out = {epoch, gap}
for _, entry in ipairs(redis.call('XRANGE', stream, '(' .. since, '+', 'COUNT', ARGV[3])) do
  local fields = entry[2]
  local frame, expires = nil, 0
  for j = 1, #fields, 2 do
    if fields[j] == 'f' then frame = fields[j + 1] end
    if fields[j] == 'x' then expires = tonumber(fields[j + 1]) end
  end
  if frame and expires >= now then
    out[#out + 1] = entry[1]
    out[#out + 1] = frame
  end
end
return out
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


@dataclass(frozen=True, slots=True)
class Replay:
    """What one recipient's log holds after a position: its epoch, whether events after the
    position are gone, and the entries that remain, in order, as (key, entry id, body)."""

    epoch: str
    gap: bool
    entries: list[tuple[Key, str, bytes]]


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
        META_TTL_SECONDS * 1000,
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
        NotReplicated if fewer confirm in time."""
        if not self.durability.min_replicas:
            return script(keys=keys, args=args)
        for _ in range(3):
            pipe = self._master_of(keys[0]).pipeline(transaction=False)
            script(keys=keys, args=args, client=pipe)
            pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
            try:
                reply, replicas = pipe.execute()
            except _REDIRECTS:
                assert isinstance(self.client, redis.RedisCluster)
                self.client.nodes_manager.initialize()  # the slot moved: ask again
                continue
            return _replicated(reply, replicas, self.durability)
        raise redis.exceptions.ClusterError("the recipient's slot kept moving")

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
            return as_text(self._append(keys=keys, args=args))

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
            return await script(keys=keys, args=args)
        for _ in range(3):
            pipe = self._master_of(keys[0]).pipeline(transaction=False)
            await script(keys=keys, args=args, client=pipe)
            pipe.wait(self.durability.min_replicas, self.durability.timeout_ms)
            try:
                reply, replicas = await pipe.execute()
            except _REDIRECTS:
                assert isinstance(self.client, redis.asyncio.RedisCluster)
                await self.client.nodes_manager.initialize()
                continue
            return _replicated(reply, replicas, self.durability)
        raise redis.exceptions.ClusterError("the recipient's slot kept moving")

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

    async def replay(self, recipient: Recipient, since: Position) -> Replay:
        """The entries of one recipient's log after `since`, and whether some are gone."""
        async with self._reads or contextlib.nullcontext():
            return await self._replay_one(recipient, since)

    async def _replay_one(self, recipient: Recipient, since: Position) -> Replay:
        reply = await self._replay(
            keys=[recipient.stream_key, recipient.meta_key],
            args=[
                since.entry,
                since.epoch or "",
                self.retention.max_len,
                META_TTL_SECONDS * 1000,
                self.retention.max_age_seconds * 1_000_000,
            ],
        )
        epoch, gap, *flat = reply
        entries = []
        for index in range(0, len(flat), 2):
            entry = as_text(flat[index])
            entries.append((entry_key(entry), entry, bytes(flat[index + 1])))
        return Replay(epoch=as_text(epoch), gap=bool(gap), entries=entries)

    async def replay_all(
        self, recipients: tuple[Recipient, ...], since: list[Position]
    ) -> list[Replay]:
        """`replay` for each recipient, concurrently (on a cluster, on their own shards)."""
        return list(await asyncio.gather(*map(self.replay, recipients, since)))


def as_text(value: object) -> str:
    """A Redis reply (bytes, or already text) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
