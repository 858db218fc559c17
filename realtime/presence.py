"""Who is connected, across every edge; the per-user connection cap; disconnecting a user.

**Presence.** Each edge process counts its own connections per user and keeps those counts
in Redis (key names in `realtime.recipients`): a user's hash `insight:{user:42}:presence` has
one field per edge (its instance id), a business's hash `insight:{business:b1}:presence` one
per member and edge (`42:<edge>`: the member's id encoded as in key names, `key_part`, which
holds no `:`, so the first `:` ends it). A value is `<count>:<expires_ms>:<seq>`: the count
holds until `expires_ms` (the Redis clock) unless its edge writes it again, and `seq` orders one
edge's writes, so a write that arrives late (a heartbeat that a connect overtook on another
connection) never replaces a newer one. Every edge rewrites all its entries every
PRESENCE_TTL_SECONDS / 3 (one script per hash slot, pipelined: the cost is per edge and per
connected user, never per event), so the users of an edge that dies (kill -9) leave presence
within PRESENCE_TTL_SECONDS. Readers skip expired entries; writers sweep them away. A count
that falls to 0 is written as 0 and left to expire, so that no late write brings it back.

A read is one script over one key: a user's costs O(edges holding that user), a business's
O(its members online), however many users are online elsewhere. Redis 7.0 has no per-field
expiry (HEXPIRE is 7.4), hence the expiry inside each value.

**The cap.** A connect runs one script over the user's slot, after the edge has subscribed
the user's live channel and before the connection is caught up: it refuses a user whose
tokens are revoked (below), and a connection that would take the user's live counts on every
edge (this one's included, with this connection) past WS_MAX_CONNECTIONS_PER_USER; otherwise
it writes this edge's new count. Counts of other edges are as their last scripts left them, so
the cap holds across edges. One inexactness: connects of one user racing on one edge each
count the others still in flight, so for one round trip a refused one may be counted (a
neighbour then refused too early, never admitted past the cap). A socket that closes frees its
slot within a round trip; an edge that dies frees its slots within PRESENCE_TTL_SECONDS.

Business entries are written by the edge's flusher right after the connect (one pipeline for
everything that changed meanwhile), so a business's presence follows a connect by a round
trip, where a user's is written before the connection is ready.

**Revocation.** `revoke` (POST /api/v1/users/{id}/disconnect, `UIManager.disconnect()`)
runs one script over the user's slot: it sets the user's mark to the Redis clock's current
second (kept `Settings.revocation_keep_seconds`: the longest a token may live, plus the leeway
of JWT_LEEWAY_SECONDS it is accepted with past its `exp`) and announces it on the user's
live channel, which every edge holding a connection of that user has subscribed: the edges
close each such connection whose token was issued in or before that second with 4401
`revoked`. The announcement has the form of an event's (`<coalesce key>\\n<event id>\\n<body>`,
`realtime.frames`) with an event id no event has (`REVOKE_EVENT_ID`; an event id starts with
u, b or a), so the hub sees it only where it already found no event id: the delivery path pays
nothing for it. Connects and in-band renewals check the mark themselves; and each heartbeat
reads the marks of the edge's users, so a connection that missed the announcement (its
channel was being moved to another node) is closed within PRESENCE_TTL_SECONDS / 3.

Tokens issued in the same second as the revocation are refused too (`iat` has second
resolution): a client that logs in again gets a token the next second. Revocation compares
the Redis clock with the issuer's: keep them in sync (NTP). A token without `iat` is refused
while any mark of its user is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import itertools
import logging
import math
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
import redis.asyncio
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from core.security import Identity, issued_before
from realtime.eventlog import as_text
from realtime.frames import REVOKE_ANNOUNCEMENT
from realtime.recipients import Recipient, ident_of_key_part, key_part

if TYPE_CHECKING:
    from realtime.eventlog import AsyncEventLog, EventLog

logger = logging.getLogger(__name__)

PIPELINE_CALLS = 256  # script calls per pipeline round trip
RETRACT_TIMEOUT_SECONDS = 2.0  # an edge that stops gives its entries up for this long at most

SyncClient = redis.Redis | redis.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.RedisCluster

_COMMON_LUA = """
local function parse(value)
  local a = string.find(value, ':', 1, true)
  local b = string.find(value, ':', a + 1, true)
  return tonumber(string.sub(value, 1, a - 1)), tonumber(string.sub(value, a + 1, b - 1)),
    tonumber(string.sub(value, b + 1))
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_WRITE_LUA = (
    _COMMON_LUA
    + """
local function put(key, field, count, seq, now, ttl)
  local old = redis.call('HGET', key, field)
  if old then
    local _, _, old_seq = parse(old)
    if old_seq > seq then return end
  end
  redis.call('HSET', key, field,
    string.format('%d:%.0f:%.0f', count, now + ttl, seq))
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
"""
)

# KEYS: the user's presence hash, the user's revocation mark.
# ARGV: edge, this edge's count with the new connection, seq, ttl_ms, cap (0: none), the
#       token's iat (whole seconds; -1 without one).
# Returns {0 admitted | 1 revoked | 2 over the cap, the user's connections on every edge}.
_ENTER = (
    "#!lua\n"
    + _WRITE_LUA
    + """
local presence, edge = KEYS[1], ARGV[1]
local count, seq, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cap, iat = tonumber(ARGV[5]), tonumber(ARGV[6])
local mark = redis.call('GET', KEYS[2])
if mark and iat <= tonumber(mark) then return {1, 0} end
local now = now_ms()
local others = 0
local fields = redis.call('HGETALL', presence)
for i = 1, #fields, 2 do
  if fields[i] ~= edge then
    local n, expires = parse(fields[i + 1])
    if expires < now then redis.call('HDEL', presence, fields[i]) else others = others + n end
  end
end
if cap > 0 and others + count > cap then return {2, others} end
put(presence, edge, count, seq, now, ttl)
return {0, others + count}
"""
)

# KEYS: presence hashes and revocation marks, all of one slot.
# ARGV: seq, ttl_ms, then per entry: the index of its hash in KEYS, its field, its count, and
#       the index of its user's mark in KEYS (0: do not read one).
# Writes each entry (unless a newer write of this edge is there), sweeps a few expired
# fields of each hash, and returns {entry number, mark, ...} for the marks that are set.
_PUT = (
    "#!lua\n"
    + _WRITE_LUA
    + """
local seq, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local marks = {}
for j = 3, #ARGV, 4 do
  local key = KEYS[tonumber(ARGV[j])]
  put(key, ARGV[j + 1], tonumber(ARGV[j + 2]), seq, now, ttl)
  local sample = redis.call('HRANDFIELD', key, 3, 'WITHVALUES')
  for i = 1, #sample, 2 do
    local _, expires = parse(sample[i + 1])
    if expires < now then redis.call('HDEL', key, sample[i]) end
  end
  local r = tonumber(ARGV[j + 3])
  if r > 0 then
    local mark = redis.call('GET', KEYS[r])
    if mark then
      marks[#marks + 1] = (j + 1) / 4
      marks[#marks + 1] = tonumber(mark)
    end
  end
end
return marks
"""
)

# KEYS: a presence hash. ARGV: 'user' or 'business'.
# Returns a user's live connections on every edge, or a business's {user, connections, ...}.
_READ = (
    "#!lua flags=no-writes\n"
    + _COMMON_LUA
    + """
local now = now_ms()
local fields = redis.call('HGETALL', KEYS[1])
if ARGV[1] == 'user' then
  local total = 0
  for i = 1, #fields, 2 do
    local n, expires = parse(fields[i + 1])
    if expires >= now then total = total + n end
  end
  return total
end
local counts, order = {}, {}
for i = 1, #fields, 2 do
  local n, expires = parse(fields[i + 1])
  if n > 0 and expires >= now then
    local user = string.sub(fields[i], 1, string.find(fields[i], ':', 1, true) - 1)
    if not counts[user] then order[#order + 1] = user; counts[user] = 0 end
    counts[user] = counts[user] + n
  end
end
local out = {}
for _, user in ipairs(order) do
  out[#out + 1] = user
  out[#out + 1] = counts[user]
end
return out
"""
)

# KEYS: the user's revocation mark. ARGV: the user's live channel, how long to keep the mark
# (seconds), the announcement without its body.
# Returns the mark: the Redis clock's second, or a later mark already set.
_REVOKE = """#!lua
local t = redis.call('TIME')
local mark = tonumber(t[1])
local old = redis.call('GET', KEYS[1])
if old and tonumber(old) > mark then mark = tonumber(old) end
local text = string.format('%.0f', mark)
redis.call('SET', KEYS[1], text, 'EX', ARGV[2])
redis.call('SPUBLISH', ARGV[1], ARGV[3] .. text)
return mark
"""


class _Lua:
    """A script run by its SHA1, and sent whole only to a node that does not have it yet."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def run(self, client: SyncClient, keys: list[str], args: list[str | int]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(self.text, len(keys), *keys, *args)

    async def run_async(self, client: AsyncClient, keys: list[str], args: list[str | int]) -> Any:
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self.text, len(keys), *keys, *args)


ENTER, PUT, READ = _Lua(_ENTER), _Lua(_PUT), _Lua(_READ)


def _presence_key(recipient: Recipient) -> str:
    if recipient.kind == "all":
        raise ValueError("presence is kept per user and per business, not for everyone")
    return recipient.presence_key


def _user(recipient: Recipient) -> Recipient:
    if recipient.kind != "user":
        raise ValueError(f"only a user can be disconnected, not {recipient}")
    return recipient


def _members(reply: list[Any]) -> dict[str, int]:
    """The READ script's {encoded user id, count, ...}, by user id."""
    return {
        ident_of_key_part(as_text(reply[i])): int(reply[i + 1]) for i in range(0, len(reply), 2)
    }


# -- reads and revocation, for any process (UIManager, the job API) ---------------------------


def connections(client: SyncClient, recipient: Recipient) -> int:
    """The live connections of a user (or of all members of a business) on every edge."""
    if recipient.kind == "business":
        return sum(members(client, recipient).values())
    return int(READ.run(client, [_presence_key(recipient)], ["user"]))


async def connections_async(client: AsyncClient, recipient: Recipient) -> int:
    """`connections` for asyncio code."""
    if recipient.kind == "business":
        return sum((await members_async(client, recipient)).values())
    return int(await READ.run_async(client, [_presence_key(recipient)], ["user"]))


def members(client: SyncClient, business: Recipient) -> dict[str, int]:
    """The connected members of a business: user id -> live connections on every edge."""
    return _members(READ.run(client, [_presence_key(business)], ["business"]))


async def members_async(client: AsyncClient, business: Recipient) -> dict[str, int]:
    """`members` for asyncio code."""
    return _members(await READ.run_async(client, [_presence_key(business)], ["business"]))


def _revoke_call(user: Recipient, keep_seconds: int) -> tuple[list[str], list[str | int]]:
    user = _user(user)
    return [user.revoked_key], [user.live_channel, keep_seconds, REVOKE_ANNOUNCEMENT]


def revoke(log: EventLog, user: Recipient, keep_seconds: int) -> int:
    """Refuse the user's tokens issued up to now and close the user's sockets on every edge;
    returns the mark (Unix seconds, Redis clock: tokens with `iat` up to it are refused).

    Written as durably as the log's events (EVENTS_MIN_REPLICAS: `EventLog.run_durably`),
    so that a failover cannot lose a revocation the caller was told had been made."""
    script = log.client.register_script(_REVOKE)
    return int(log.run_durably(script, *_revoke_call(user, keep_seconds)))


async def revoke_async(log: AsyncEventLog, user: Recipient, keep_seconds: int) -> int:
    """`revoke` for asyncio code."""
    script = log.client.register_script(_REVOKE)
    return int(await log.run_durably(script, *_revoke_call(user, keep_seconds)))


def revocation_mark(client: SyncClient, user_id: str) -> int | None:
    """The user's revocation mark, if one is held (see `core.security.issued_before`)."""
    mark = client.get(Recipient.user(user_id).revoked_key)
    return None if mark is None else int(cast(bytes, mark))


def is_revoked(client: SyncClient, identity: Identity) -> bool:
    """Whether the user's revocation mark refuses this identity's token."""
    mark = revocation_mark(client, identity.user_id)
    return mark is not None and issued_before(identity, mark)


async def revocation_mark_async(client: AsyncClient, user_id: str) -> int | None:
    """`revocation_mark` for asyncio code."""
    mark = await cast(Awaitable[Any], client.get(Recipient.user(user_id).revoked_key))
    return None if mark is None else int(mark)


# -- an edge's share ---------------------------------------------------------------------


class Admission(enum.Enum):
    ADMITTED = 0
    REVOKED = 1
    OVER_CAP = 2


Entry = tuple[str | None, str]  # (None, user): the user's count; (business, user): a member's
OnRevoked = Callable[[str, int], object]  # (user id, mark): close the user's older sessions

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def new_edge_id() -> str:
    """A readable id unique to this process: host, pid and a random part."""
    host = _UNSAFE.sub("-", socket.gethostname())[:40] or "edge"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


class Presence:
    """This edge's connections in the shared presence: admitted by `enter`, given back by
    `leave`, and kept alive by a heartbeat."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        ttl_seconds: float,
        max_per_user: int,
        on_revoked: OnRevoked,
        edge_id: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.edge = edge_id or new_edge_id()
        self._client = client
        # redis-py's cluster client refuses a call when a node's pool is full (one Redis's
        # blocking pool waits): on a cluster, at most this many presence calls at once.
        self._calls = asyncio.Semaphore(concurrency) if concurrency else None
        self._ttl_ms = int(ttl_seconds * 1000)
        self._interval = ttl_seconds / 3
        self._cap = max_per_user
        self._on_revoked = on_revoked
        self._counts: dict[Entry, int] = {}
        self._dirty: set[Entry] = set()  # changed since last written
        self._seq = itertools.count(1)
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._beat(), name="presence-heartbeat"
        )
        logger.info(
            "presence started", extra={"edge": self.edge, "ttl_ms": self._ttl_ms, "cap": self._cap}
        )

    async def stop(self) -> None:
        """Stop the heartbeat and give up every entry (written as 0, in one pass)."""
        self._stopped = True
        for task in (self._heartbeat, self._flusher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        entries = {entry: 0 for entry in self._counts}
        self._counts.clear()
        self._dirty.clear()
        if entries:
            try:
                async with asyncio.timeout(RETRACT_TIMEOUT_SECONDS):
                    await self._write(entries)
            except Exception as error:
                logger.warning(
                    "presence not retracted; it expires by itself",
                    extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                )

    async def enter(self, identity: Identity) -> Admission:
        """Count a new connection of `identity`, unless its tokens are revoked or the user is
        at the cap. Redis errors propagate (with nothing counted)."""
        if self._stopped:
            raise redis.ConnectionError("the edge is stopping")
        user = Recipient.user(identity.user_id)
        own: Entry = (None, identity.user_id)
        count = self._counts.get(own, 0) + 1
        self._counts[own] = count
        iat = -1 if identity.issued_at is None else math.floor(identity.issued_at)
        try:
            async with self._calls or contextlib.nullcontext():
                status, _total = await ENTER.run_async(
                    self._client,
                    [user.presence_key, user.revoked_key],
                    [self.edge, count, next(self._seq), self._ttl_ms, self._cap, iat],
                )
        except BaseException:
            self._change(own, -1)
            raise
        admission = Admission(int(status))
        if admission is not Admission.ADMITTED:
            self._change(own, -1)
        elif identity.business_id is not None:
            self._change((identity.business_id, identity.user_id), +1)
        return admission

    def leave(self, identity: Identity) -> None:
        """An admitted connection closed: its slot is given back within a round trip."""
        if self._stopped:
            return
        self._change((None, identity.user_id), -1)
        if identity.business_id is not None:
            self._change((identity.business_id, identity.user_id), -1)

    async def revoked(self, identity: Identity) -> bool:
        """Whether the user's revocation mark refuses this identity's token (a renewal)."""
        async with self._calls or contextlib.nullcontext():
            mark = await revocation_mark_async(self._client, identity.user_id)
        return mark is not None and issued_before(identity, mark)

    # -- writing --------------------------------------------------------------------------

    def _change(self, entry: Entry, delta: int) -> None:
        self._counts[entry] = max(0, self._counts.get(entry, 0) + delta)
        self._dirty.add(entry)
        if self._flusher is None and not self._stopped:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush(), name="presence-flush"
            )

    async def _flush(self) -> None:
        """Write what changed, batched: whatever changes while a write is in flight goes in
        the next one."""
        try:
            while self._dirty and not self._stopped:
                entries = self._take(self._dirty)
                self._dirty = set()
                try:
                    await self._write(entries)
                except Exception as error:  # Redis errors, and redis-py's cluster ones
                    self._dirty.update(entries)
                    logger.warning(
                        "presence write failed; retrying",
                        extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                    )
                    await asyncio.sleep(min(self._interval, 1.0))
        finally:
            self._flusher = None

    def _take(self, entries: Iterable[Entry]) -> dict[Entry, int]:
        """The counts of `entries` now; a count of 0 is forgotten once it is taken."""
        taken = {entry: self._counts.get(entry, 0) for entry in entries}
        for entry, count in taken.items():
            if count == 0:
                self._counts.pop(entry, None)
        return taken

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            entries = self._take(list(self._counts))
            started = asyncio.get_running_loop().time()
            try:
                await self._write(entries)
            except Exception as error:  # Redis errors, and redis-py's cluster ones
                logger.warning(
                    "presence heartbeat failed",
                    extra={"edge": self.edge, "entries": len(entries), "error": repr(error)},
                )
                continue
            elapsed = asyncio.get_running_loop().time() - started
            logger.debug(
                "presence heartbeat",
                extra={"edge": self.edge, "entries": len(entries), "ms": round(elapsed * 1e3, 1)},
            )

    async def _write(self, entries: dict[Entry, int]) -> None:
        """Write `entries` (one script per hash slot, pipelined); hand the revocation marks
        the scripts read to `on_revoked`."""
        seq = next(self._seq)
        calls = _put_calls(entries, self.edge, seq, self._ttl_ms)
        for start in range(0, len(calls), PIPELINE_CALLS):
            batch = calls[start : start + PIPELINE_CALLS]
            async with self._calls or contextlib.nullcontext():
                replies = await self._pipeline(batch)
            for (_keys, _args, users), reply in zip(batch, replies, strict=True):
                for i in range(0, len(reply), 2):
                    self._on_revoked(users[int(reply[i]) - 1], int(reply[i + 1]))

    async def _pipeline(self, calls: list[_PutCall]) -> list[list[Any]]:
        """Run the PUT calls in one round trip (per node, on a cluster); a node that does
        not know the script (a new master after a failover) is sent it whole."""
        replies = await self._evalsha_all(calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await cast(Awaitable[Any], self._client.script_load(PUT.text))  # every master
            retried = await self._evalsha_all([calls[i] for i in missing])
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _evalsha_all(self, calls: list[_PutCall]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for keys, args, _users in calls:
            # Not `pipe.evalsha`, which redis-py refuses in a cluster pipeline: the command
            # itself is routed by its keys (all in one slot) like any other.
            pipe.execute_command("EVALSHA", PUT.sha, len(keys), *keys, *args)
        return list(await pipe.execute(raise_on_error=False))


_PutCall = tuple[list[str], list[str | int], list[str]]  # keys, args, the entries' users


def _put_calls(entries: dict[Entry, int], edge: str, seq: int, ttl_ms: int) -> list[_PutCall]:
    """One PUT call per hash slot: its keys, its arguments, and the user of each entry."""
    by_slot: dict[int, tuple[dict[str, int], list[str | int], list[str]]] = {}
    for (business, user_id), count in entries.items():
        if business is None:
            user = Recipient.user(user_id)
            key, field, mark = user.presence_key, edge, user.revoked_key
        else:
            key, mark = Recipient.business(business).presence_key, ""
            field = f"{key_part(user_id)}:{edge}"
        keys, args, users = by_slot.setdefault(key_slot(key.encode()), ({}, [seq, ttl_ms], []))
        index = keys.setdefault(key, len(keys) + 1)
        mark_index = keys.setdefault(mark, len(keys) + 1) if mark else 0
        args.extend((index, field, count, mark_index))
        users.append(user_id)
    return [(list(keys), args, users) for keys, args, users in by_slot.values()]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What `UIManager.deliver` published: the event's id, and whether its recipient had a
    connection open on some edge right after it was published (see `deliver` for the race)."""

    id: str
    live: bool
