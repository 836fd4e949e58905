-- KEYS: held, users, channel, names. ARGV: user, the lease's end (Unix ms). After
-- join_presence.lua.
join_presence(ARGV[2])
return 1
