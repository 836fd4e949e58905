-- What a `joined` needs, in one round trip. After lease.lua, join_presence.lua, members_page.lua,
-- message_size.lua, state.lua, reads.lua, recover.lua and ensure_epoch.lua.
-- KEYS: held, users, channel, names, state, gone, erased, read markers, stream, trimmed, epoch.
-- ARGV: user (whose read marker is told; held with join presence), join presence (1/0),
-- since ('' for none), recovery limit, page, recovery byte bound, bytes every message of the room
-- counts beyond its fields (see message_size.lua), the client's epoch ('' for none), members listed
-- at most, the end of the instance's lease (Unix ms; with join presence), the cap of unread
-- counts.
-- Returns {members, entries, recovered (1/0), epoch, more members (1/0), read marker ('' for
-- none), unread}: the first members in name order; what followed `since` if this history can
-- recover it (see recover.lua), else the latest `page` messages, newest first.
if ARGV[2] == '1' then join_presence(ARGV[10]) end
local members, more = members_page(KEYS[2], KEYS[4], '', tonumber(ARGV[9]))
local marker = redis.call('HGET', KEYS[8], ARGV[1]) or ''
local unread = unread_after(KEYS[9], KEYS[5], marker, tonumber(ARGV[11]))
local since = ARGV[3]
local same_history = ARGV[8] == '' or ARGV[8] == epoch
if since ~= '' and same_history then
  local missed = recover({KEYS[9], KEYS[10], KEYS[5], KEYS[6], KEYS[7]}, since,
    tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[7]))
  if missed then return {members, missed, 1, epoch, more, marker, unread} end
end
local page = latest(KEYS[9], KEYS[5], KEYS[6], '', tonumber(ARGV[5]))
return {members, page, 0, epoch, more, marker, unread}
