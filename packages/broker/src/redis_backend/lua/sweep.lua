-- Removes expired presence entries, publishing `offline` for users left without any.
-- KEYS: presence zset, users hash, channel. Defines `now` (ms, Redis's clock).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, entry in ipairs(expired) do
  redis.call('ZREM', KEYS[1], entry)
  local user = string.sub(entry, string.find(entry, '\n', 1, true) + 1)
  if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
    redis.call(PUBLISH, KEYS[3], 'p0' .. user)
  end
end
