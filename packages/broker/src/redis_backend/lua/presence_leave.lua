-- Removes this node instance's entry, publishing `offline` if it was the user's last. Returns 1
-- if the instance holds nobody in the room any more (its set is gone), so the node may take the
-- room off its list, else 0.
-- KEYS: held, users, channel, names. ARGV: user.
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[4], ARGV[1])
    redis.call(PUBLISH, KEYS[3], 'p0' .. ARGV[1])
  end
end
return redis.call('EXISTS', KEYS[1]) == 0 and 1 or 0
