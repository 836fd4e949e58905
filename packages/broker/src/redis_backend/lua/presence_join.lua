-- KEYS: held, users, channel. ARGV: user. After join_presence.lua.
join_presence()
return 1
