-- What a `joined` needs, in one round trip. After join_presence.lua and ensure_epoch.lua.
-- KEYS: held, users, channel, stream, trimmed, epoch. ARGV: user, join presence (1/0), since
-- ('' for none), recovery limit, page, recovery byte bound, bytes every message of the room
-- counts beyond its fields (see message_size.lua), the client's epoch ('' for none).
-- Returns {members, entries, recovered (1/0), epoch}: the messages after `since` if they are all
-- kept and within both bounds (read in chunks, stopping as soon as they are over), else the
-- latest `page`, newest first.
local MAX_ID = '18446744073709551615-18446744073709551615'
local CHUNK = 100
if ARGV[2] == '1' then join_presence() end
local members = redis.call('HKEYS', KEYS[2])
local same_history = ARGV[8] == '' or ARGV[8] == epoch
if ARGV[3] ~= '' and same_history and redis.call('EXISTS', KEYS[4]) == 1 then
  local trimmed = redis.call('GET', KEYS[5])
  local function parts(id)
    local dash = string.find(id, '-', 1, true)
    return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
  end
  local recoverable = true
  if trimmed then
    local tm, ts = parts(trimmed)
    local sm, ss = parts(ARGV[3])
    recoverable = tm < sm or (tm == sm and ts <= ss)
  end
  if recoverable and ARGV[3] == MAX_ID then return {members, {}, 1, epoch} end
  if recoverable then
    local limit, max_bytes, fixed = tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7])
    local missed, bytes, fits = {}, 0, true
    local start = '(' .. ARGV[3]
    while fits do
      local chunk = redis.call('XRANGE', KEYS[4], start, '+', 'COUNT', CHUNK)
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
    if fits then return {members, missed, 1, epoch} end
  end
end
return {members, redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', tonumber(ARGV[5])), 0, epoch}
