-- A recovery on its own (`Broker::recover`): the trimmed check, the check that `since` is an id of
-- this history and the chunked read, atomically (nothing is trimmed in between). Like a join, it
-- keeps the room's keys alive. After message_size.lua, state.lua, reads.lua, recover.lua and
-- ensure_epoch.lua.
-- KEYS: state, gone, erased, stream, trimmed, epoch. ARGV: since, recovery limit, recovery byte
-- bound, bytes every message of the room counts beyond its fields.
-- Returns {entries, recovered (1/0)}: the entries after `since`, oldest first, if recovered.
local missed = recover({KEYS[4], KEYS[5], KEYS[1], KEYS[2], KEYS[3]}, ARGV[1],
  tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if missed then return {missed, 1} end
return {{}, 0}
