"""The scripts of presence, the per-user cap and revocation (what they keep, and why:
`realtime.broker.presence_calls`)."""

from __future__ import annotations

from realtime.broker.call import Lua

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

# A function for other scripts (the log's APPEND): whether the presence hash `key` holds a live
# count under a field that starts with `prefix` (a tab's fields: `<tab id>:<edge>`), at `now`
# (milliseconds, the Redis clock).
HAS_LIVE_LUA = """
local function has_live(key, prefix, now)
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, #prefix) == prefix then
      local value = fields[i + 1]
      local a = string.find(value, ':', 1, true)
      local b = string.find(value, ':', a + 1, true)
      if tonumber(string.sub(value, 1, a - 1)) > 0
          and tonumber(string.sub(value, a + 1, b - 1)) >= now then
        return true
      end
    end
  end
  return false
end
"""

# KEYS: the user's presence hash, the user's revocation mark (and the user's tabs hash, for a
#       connection of a tab).
# ARGV: edge, this edge's count with the new connection, seq, ttl_ms, cap (0: none), the
#       token's iat (whole seconds; -1 without one) (and the tab's field, `<tab id>:<edge>`, and
#       this edge's count of the tab's connections with the new one).
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
if ARGV[7] then put(KEYS[3], ARGV[7], tonumber(ARGV[8]), seq, now, ttl) end
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


ENTER, PUT, READ, REVOKE = Lua(_ENTER), Lua(_PUT), Lua(_READ), Lua(_REVOKE)
