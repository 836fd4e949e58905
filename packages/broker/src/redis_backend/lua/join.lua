-- What a `joined` needs, in one round trip. After lease.lua, join_presence.lua, members_page.lua,
-- message_size.lua, recover.lua and ensure_epoch.lua.
-- KEYS: held, users, channel, names, stream, trimmed, epoch. ARGV: user (with join presence, else
-- ''), join presence (1/0),
-- since ('' for none), recovery limit, page, recovery byte bound, bytes every message of the room
-- counts beyond its fields (see message_size.lua), the client's epoch ('' for none), members listed
-- at most, the end of the instance's lease (Unix ms; with join presence).
-- Returns {members, entries, recovered (1/0), epoch, more members (1/0)}: the first members in
-- name order; the messages after `since` if this history can recover them (see recover.lua), else
-- the latest `page`, newest first.
if ARGV[2] == '1' then join_presence(ARGV[10]) end
local members, more = members_page(KEYS[2], KEYS[4], '', tonumber(ARGV[9]))
local since = ARGV[3]
local same_history = ARGV[8] == '' or ARGV[8] == epoch
if since ~= '' and same_history then
  local missed = recover(KEYS[5], KEYS[6], since, tonumber(ARGV[4]), tonumber(ARGV[6]),
    tonumber(ARGV[7]))
  if missed then return {members, missed, 1, epoch, more} end
end
local latest = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', tonumber(ARGV[5]))
return {members, latest, 0, epoch, more}
