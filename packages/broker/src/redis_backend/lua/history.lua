-- A page of a room's history (`Broker::history`): the latest `count` messages below `before`
-- ('' for the end), newest first, in their current state (see `latest` in reads.lua). After
-- reads.lua. KEYS: stream, state, gone. ARGV: before, count.
return latest(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
