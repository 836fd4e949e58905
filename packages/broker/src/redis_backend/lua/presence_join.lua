-- KEYS: held, users, channel, names. ARGV: user. After join_presence.lua.
join_presence()
return 1
