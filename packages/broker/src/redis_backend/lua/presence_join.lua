-- KEYS: presence, users, channel. ARGV: entry, user, ttl ms. After sweep.lua, join_presence.lua.
join_presence()
return 1
