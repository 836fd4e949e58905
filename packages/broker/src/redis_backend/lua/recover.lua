-- Defines `recover(stream, trimmed_key, since, limit, max_bytes, fixed)`: the entries after
-- `since`, oldest first, if `since` is an id of this history and the entries after it are all
-- kept and within both bounds (`limit` entries, `max_bytes` as message_size counts them, `fixed`
-- its bytes per message beyond the fields), read in chunks and stopping as soon as they are over;
-- else nil. After message_size.lua.
local MAX_ID = '18446744073709551615-18446744073709551615'
local MIN_ID = '0-0'
local CHUNK = 100
local function recover(stream, trimmed_key, since, limit, max_bytes, fixed)
  if redis.call('EXISTS', stream) ~= 1 then return nil end
  local trimmed = redis.call('GET', trimmed_key)
  local function parts(id)
    local dash = string.find(id, '-', 1, true)
    return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
  end
  local recoverable = true
  if trimmed then
    local tm, ts = parts(trimmed)
    local sm, ss = parts(since)
    recoverable = tm < sm or (tm == sm and ts <= ss)
  end
  -- `since` must be an id of this history: a kept message's, the newest trimmed one, or an
  -- anchor (nothing is after MAX_ID; everything is after MIN_ID while nothing was trimmed).
  -- Any other (one from a history Redis lost, whatever the epoch says) would pass the new
  -- history off as what followed it.
  local anchored = since == MAX_ID or since == trimmed or (since == MIN_ID and not trimmed)
  if recoverable and not anchored then
    recoverable = #redis.call('XRANGE', stream, since, since) == 1
  end
  if not recoverable then return nil end
  if since == MAX_ID then return {} end
  local missed, bytes = {}, 0
  local start = '(' .. since
  while true do
    local chunk = redis.call('XRANGE', stream, start, '+', 'COUNT', CHUNK)
    for _, entry in ipairs(chunk) do
      bytes = bytes + message_size(fixed, entry[1], entry[2][2])
      if #missed == limit or bytes > max_bytes then return nil end
      missed[#missed + 1] = entry
    end
    if #chunk < CHUNK then return missed end
    start = '(' .. chunk[#chunk][1]
  end
end
