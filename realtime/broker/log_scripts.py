"""The two scripts of a recipient's log: APPEND (store and announce one event) and REPLAY
(read a page of it). What they keep and why is told in `realtime.broker.log_calls`.

The scripts start with `#!lua` and declare no cross-slot flag, so Redis itself refuses a key
outside the recipient's slot.
"""

from __future__ import annotations

from realtime.broker.call import Lua
from realtime.broker.presence_scripts import HAS_LIVE_LUA
from realtime.frames import ANNOUNCEMENT_LUA, MAX_SEQ

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

# KEYS: stream, meta, idempotency (the meta key again when the call has no key), the user's
#       tabs hash (the meta key again for an event for every tab), and for a versioned
#       event, its coalesce key's version key.
# ARGV: channel, body, ttl_us, max_len, max_age_us, coalesce key, idempotency ttl_ms,
#       kind letter, '1' if KEYS[3] is an idempotency key, meta ttl_ms, the tab's id ('' for
#       every tab), and for a versioned event, its version.
# A versioned event below the newest version of its coalesce key returns that one's id.
APPEND = Lua(
    "#!lua\n"
    + _EPOCH_LUA
    + HAS_LIVE_LUA
    + """
local stream, meta = KEYS[1], KEYS[2]
local remembers = ARGV[9] == '1'
if remembers then
  local first = redis.call('GET', KEYS[3])
  if first then return first end
end
local version = tonumber(ARGV[12])
if version then
  local newest = redis.call('GET', KEYS[5])
  if newest then
    local space = string.find(newest, ' ', 1, true)
    if tonumber(string.sub(newest, 1, space - 1)) > version then
      return string.sub(newest, space + 1)
    end
  end
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
local expires = string.format('%.0f', now + tonumber(ARGV[3]))
local scope = ''
if ARGV[11] ~= '' and has_live(KEYS[4], ARGV[11] .. ':', math.floor(now / 1000)) then
  scope = ' ' .. ARGV[11]
  redis.call('XADD', stream, entry, 'f', body, 'x', expires, 't', ARGV[11])
else
  redis.call('XADD', stream, entry, 'f', body, 'x', expires)
end
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
if version then redis.call('SET', KEYS[5], ARGV[12] .. ' ' .. event_id, 'PX', ARGV[10]) end
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
# Returns {epoch, gap (0/1), more (0/1), last entry scanned ('' if none), through, entry, tab
# id ('' for every tab), body, ...}:
# a page of the entries after the position, in order, expired ones left out. A page stops at
# `max entries` or once it holds `max bytes` (or has scanned SCAN_FACTOR times as many
# entries), with `more` set: the next page starts after the last entry scanned. The stream is
# read a chunk at a time, so a script never holds much more than a page, however big the log.
# `through`: up to where the page holds every entry the log will ever have after the position:
# its last entry scanned if it stopped early; at the log's end, the clock too (an entry
# appended later gets its microsecond, or one past the log's last), for merging logs in order.
_CLOCK_SEQ = f"-{MAX_SEQ}"  # the sequence part of a position read from the clock
REPLAY_CHUNK = 32  # entries read from the stream per XRANGE
SCAN_FACTOR = 4  # expired entries skipped count too, so that no page scans without end

REPLAY = Lua(
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
local out = {epoch, gap, 0, '', ''}
local clock = string.format('%.0f', now - 1) .. '"""
    + _CLOCK_SEQ
    + """'
local function at_end()
  local last = out[4] ~= '' and out[4] or after
  out[5] = less(last, clock) and clock or last
  return out
end
local max_entries, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local taken, bytes, scanned = 0, 0, 0
local start = '(' .. after
while true do
  local chunk = redis.call('XRANGE', stream, start, '+', 'COUNT', """
    + str(REPLAY_CHUNK)
    + """)
  for _, entry in ipairs(chunk) do
    local fields = entry[2]
    local frame, expires, tab = nil, 0, ''
    for j = 1, #fields, 2 do
      if fields[j] == 'f' then frame = fields[j + 1] end
      if fields[j] == 'x' then expires = tonumber(fields[j + 1]) end
      if fields[j] == 't' then tab = fields[j + 1] end
    end
    scanned = scanned + 1
    out[4] = entry[1]
    if frame and expires >= now then
      out[#out + 1] = entry[1]
      out[#out + 1] = tab
      out[#out + 1] = frame
      taken = taken + 1
      bytes = bytes + #frame
    end
    if taken >= max_entries or bytes >= max_bytes or scanned >= """
    + str(SCAN_FACTOR)
    + """ * max_entries then
      out[3] = 1
      out[5] = out[4]
      return out
    end
  end
  if #chunk < """
    + str(REPLAY_CHUNK)
    + """ then return at_end() end
  start = '(' .. chunk[#chunk][1]
end
"""
)
