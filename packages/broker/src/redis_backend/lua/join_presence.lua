-- Records this node's presence entry, publishing `online` if it is the user's first.
-- KEYS: presence zset, users hash, channel. ARGV: entry, user, ttl ms. Needs `now` (sweep).
local function join_presence()
  if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
      redis.call(PUBLISH, KEYS[3], 'p1' .. ARGV[2])
    end
  end
end
