-- KEYS: presence, users, channel. After sweep.lua.
return redis.call('HKEYS', KEYS[2])
