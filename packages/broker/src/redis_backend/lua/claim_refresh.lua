-- Extends a node's claim on its id if it is still ours (see claim.rs).
-- KEYS: claim. ARGV: token, ttl ms. Returns {1 if extended, 0 if gone, -1 if another token holds
-- it; Redis's clock in Unix ms}.
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, now}
end
if holder then return {-1, now} end
return {0, now}
