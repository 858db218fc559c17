"""The durable per-recipient event log in Redis, and the live announcement of each entry.

Appending is one Lua script, so an event is never in the log without being announced or
announced without being in the log. The script also assigns the event id from one global
sequence (`<redis-time-ms>-<n>`, strictly increasing across all recipients): a connection
that listens to a user, a business and everyone can then resume from one cursor, and the
edge can merge three logs in order.

Retention: each log keeps at most `max_len` entries and nothing older than `max_age`. A
cursor is "past retention" when an entry newer than it was trimmed by count (the stream's
`max-deleted-entry-id`) or when the log was lost after it (the epoch key records the first id
the current log issued). Each entry also carries its own expiry (at most `max_age`), after
which it is not replayed; trimming by age therefore never drops a replayable event.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import redis.asyncio

from realtime.channels import KEY_PREFIX, SEQUENCE_KEY, Recipient

EPOCH_KEY = f"{KEY_PREFIX}:epoch"
MAX_FRAME_BYTES = 64 * 1024  # a UI event is a notification, not a data transfer

# KEYS: sequence, epoch, stream.  ARGV: channel, body, ttl_ms, max_len, max_age_ms, coalesce_key
_APPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local last = redis.call('GET', KEYS[1])
if last then
  local dash = string.find(last, '-', 1, true)
  local last_ms = tonumber(string.sub(last, 1, dash - 1))
  if last_ms >= now then
    ms = last_ms
    seq = tonumber(string.sub(last, dash + 1)) + 1
  end
end
local id = string.format('%.0f-%.0f', ms, seq)
redis.call('SET', KEYS[1], id)
if not last then redis.call('SET', KEYS[2], id) end
local frame = '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2)
local max_age = tonumber(ARGV[5])
redis.call('XADD', KEYS[3], id, 'f', frame, 'x', string.format('%.0f', now + tonumber(ARGV[3])))
local excess = redis.call('XLEN', KEYS[3]) - tonumber(ARGV[4])
if excess > 0 then
  -- Trimming does not update max-deleted-entry-id (only XDEL does): record the newest
  -- dropped id ourselves, so replay can tell "trimmed after your cursor" from "quiet".
  local doomed = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', excess)
  redis.call('XTRIM', KEYS[3], 'MAXLEN', ARGV[4])
  redis.call('XSETID', KEYS[3], id, 'MAXDELETEDID', doomed[#doomed][1])
end
-- Entries past max_age are past every event's TTL too: dropping them loses nothing.
redis.call('XTRIM', KEYS[3], 'MINID', '~', string.format('%.0f-0', now - max_age))
redis.call('PEXPIRE', KEYS[3], max_age)
redis.call('PUBLISH', ARGV[1], ARGV[6] .. '\\n' .. frame)
return id
"""

# KEYS: sequence, epoch, stream...  ARGV: since ('' for none), per-stream limit
# Returns {head, gap (0/1), frame, frame, ...} with frames in id order, expired ones left out.
_REPLAY = """
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = redis.call('GET', KEYS[1])
if not head then
  -- An empty (or lost) log starts its epoch now, so cursors handed out from here on are
  -- valid and any older one is known to be from a previous log.
  head = string.format('%.0f-0', now)
  redis.call('SET', KEYS[1], head)
  redis.call('SET', KEYS[2], head)
end
local since = ARGV[1]
if since == '' then return {head, 0} end
local gap = 0
local epoch = redis.call('GET', KEYS[2])
if less(head, since) or (epoch and less(since, epoch)) then gap = 1 end
local entries = {}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' and less(since, info[j + 1]) then gap = 1 end
    end
    for _, entry in ipairs(redis.call('XRANGE', KEYS[i], '(' .. since, head, 'COUNT', ARGV[2])) do
      local fields = entry[2]
      local frame, expires = nil, 0
      for j = 1, #fields, 2 do
        if fields[j] == 'f' then frame = fields[j + 1] end
        if fields[j] == 'x' then expires = tonumber(fields[j + 1]) end
      end
      if frame and expires >= now then entries[#entries + 1] = {entry[1], frame} end
    end
  end
end
table.sort(entries, function(a, b) return less(a[1], b[1]) end)
local out = {head, gap}
for _, e in ipairs(entries) do out[#out + 1] = e[2] end
return out
"""


@dataclass(frozen=True, slots=True)
class Retention:
    """How much of each recipient's history the log keeps for replay."""

    max_len: int
    max_age_seconds: int


@dataclass(frozen=True, slots=True)
class Replay:
    """What a reconnecting client missed: frames in order, and whether some are gone."""

    head: str
    gap: bool
    frames: list[str]


def frame_id(frame: str) -> str:
    """The id of a frame written by the append script (it always comes first)."""
    return frame[7 : frame.index('"', 7)]


def _append_call(
    recipient: Recipient,
    body: str,
    ttl_seconds: float,
    retention: Retention,
    coalesce_key: str | None,
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
    keys = [SEQUENCE_KEY, EPOCH_KEY, recipient.stream_key]
    args: list[str | int] = [
        recipient.live_channel,
        body,
        int(ttl_seconds * 1000),
        retention.max_len,
        retention.max_age_seconds * 1000,
        coalesce_key or "",
    ]
    return keys, args


class EventLog:
    """Appends events from synchronous code (Celery tasks, scripts) over a redis-py client."""

    def __init__(self, client: redis.Redis, retention: Retention) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self.retention = retention

    def append(
        self,
        recipient: Recipient,
        body: str,
        *,
        ttl_seconds: float,
        coalesce_key: str | None = None,
    ) -> str:
        """Store and announce one event; returns its id. Redis errors propagate."""
        keys, args = _append_call(recipient, body, ttl_seconds, self.retention, coalesce_key)
        return _text(self._append(keys=keys, args=args))


class AsyncEventLog:
    """The asyncio twin of EventLog, plus the reads the edge needs to replay."""

    def __init__(self, client: redis.asyncio.Redis, retention: Retention) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self._replay = client.register_script(_REPLAY)
        self.retention = retention

    async def append(
        self,
        recipient: Recipient,
        body: str,
        *,
        ttl_seconds: float,
        coalesce_key: str | None = None,
    ) -> str:
        """Store and announce one event; returns its id. Redis errors propagate."""
        keys, args = _append_call(recipient, body, ttl_seconds, self.retention, coalesce_key)
        return _text(await self._append(keys=keys, args=args))

    async def head(self) -> str:
        """The id of the newest event of any recipient: a connection that starts here gets
        every event published after this call returned, and none from before."""
        return (await self.replay((), None)).head

    async def replay(self, recipients: tuple[Recipient, ...], since: str | None) -> Replay:
        """Frames after `since` up to the current head, merged across recipients, in order.

        Without `since` only the head is read: it is the cursor of a fresh connection.
        """
        keys = [SEQUENCE_KEY, EPOCH_KEY, *(r.stream_key for r in recipients)]
        reply = await self._replay(keys=keys, args=[since or "", self.retention.max_len * 2])
        head, gap, *frames = (_text(item) if not isinstance(item, int) else item for item in reply)
        return Replay(head=str(head), gap=bool(gap), frames=[str(f) for f in frames])


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
