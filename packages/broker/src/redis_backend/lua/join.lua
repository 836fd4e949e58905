-- What a `joined` needs, in one round trip. After lease.lua, join_presence.lua, members_page.lua
-- and ensure_epoch.lua.
-- KEYS: held, users, channel, names, stream, trimmed, epoch. ARGV: user, join presence (1/0),
-- since ('' for none), recovery limit, page, recovery byte bound, bytes every message of the room
-- counts beyond its fields (see message_size.lua), the client's epoch ('' for none), members listed
-- at most, the end of the instance's lease (Unix ms; with join presence).
-- Returns {members, entries, recovered (1/0), epoch, more members (1/0)}: the first members in
-- name order; the messages after `since` if `since` is an id of this history and the messages
-- after it are all kept and within both bounds (read in chunks, stopping as soon as they are
-- over), else the latest `page`, newest first.
local MAX_ID = '18446744073709551615-18446744073709551615'
local MIN_ID = '0-0'
local CHUNK = 100
if ARGV[2] == '1' then join_presence(ARGV[10]) end
local members, more = members_page(KEYS[2], KEYS[4], '', tonumber(ARGV[9]))
local since = ARGV[3]
local same_history = ARGV[8] == '' or ARGV[8] == epoch
if since ~= '' and same_history and redis.call('EXISTS', KEYS[5]) == 1 then
  local trimmed = redis.call('GET', KEYS[6])
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
    recoverable = #redis.call('XRANGE', KEYS[5], since, since) == 1
  end
  if recoverable and since == MAX_ID then return {members, {}, 1, epoch, more} end
  if recoverable then
    local limit, max_bytes, fixed = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
    local missed, bytes, fits = {}, 0, true
    local start = '(' .. since
    while fits do
      local chunk = redis.call('XRANGE', KEYS[5], start, '+', 'COUNT', CHUNK)
      for _, entry in ipairs(chunk) do
        bytes = bytes + message_size(fixed, entry[1], entry[2][2])
        if #missed == limit or bytes > max_bytes then
          fits = false
          break
        end
        missed[#missed + 1] = entry
      end
      if #chunk < CHUNK then break end
      start = '(' .. chunk[#chunk][1]
    end
    if fits then return {members, missed, 1, epoch, more} end
  end
end
local latest = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', tonumber(ARGV[5]))
return {members, latest, 0, epoch, more}
