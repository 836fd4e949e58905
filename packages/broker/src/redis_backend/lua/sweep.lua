-- Removes every entry of a dead node instance from one room, publishing `offline` for users it
-- was the last holder of. Idempotent: a second run finds the set gone.
-- KEYS: held (the dead instance's users in the room), users hash, channel, names index.
local users = redis.call('SMEMBERS', KEYS[1])
for _, user in ipairs(users) do
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    redis.call('ZREM', KEYS[4], user)
    redis.call(PUBLISH, KEYS[3], 'p0' .. user)
  end
end
redis.call('DEL', KEYS[1])
return #users
