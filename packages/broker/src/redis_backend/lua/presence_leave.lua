-- Removes this node instance's entry, publishing `offline` if it was the user's last.
-- KEYS: held, users, channel, names. ARGV: user.
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
    redis.call(PUBLISH, KEYS[3], 'p0' .. ARGV[1])
  end
end
return 1
