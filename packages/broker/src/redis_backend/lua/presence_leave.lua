-- Removes this node's presence entry, publishing `offline` if it was the user's last.
-- KEYS: presence, users, channel. ARGV: entry, user. After sweep.lua.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    redis.call(PUBLISH, KEYS[3], 'p0' .. ARGV[2])
  end
end
return 1
