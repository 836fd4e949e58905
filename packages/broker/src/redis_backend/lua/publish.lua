-- Stores a message in the room's stream and publishes it, in one step, so every node receives
-- messages in stream order.
-- KEYS: stream, channel, trimmed marker, dedup key (of the sender's nonce, or of the node's
-- own: every publish has one), epoch. ARGV: maxlen, encoded message, how long the dedup key
-- lives in ms (a sender's: the dedup window; the node's own: a few command timeouts). Returns
-- {id, 1} when stored, {original id, 0} for a retry of a message accepted within that time.
-- Before trimming, remembers the newest id about to go, so a recovery knows exactly which
-- `since` values still have no gap. The room has history now: its keys live for good with
-- ROOM_TTL 0 (the epoch a join made while it had none included), else ROOM_TTL more.
local dedup = KEYS[4]
local original = redis.call('GET', dedup)
if original then
  -- Written again (as it was): a write of this connection after the original's, so that a
  -- `WAIT` after this retry covers the original too (replication keeps the order).
  redis.call('SET', dedup, original, 'KEEPTTL')
  return {original, 0}
end
local maxlen = tonumber(ARGV[1])
local len = redis.call('XLEN', KEYS[1])
if len >= maxlen then
  local going = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - maxlen + 1)
  redis.call('SET', KEYS[3], going[#going][1])
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'd', ARGV[2])
redis.call(PUBLISH, KEYS[2], 'm' .. id .. '\n' .. ARGV[2])
redis.call('SET', dedup, id, 'PX', ARGV[3])
if ROOM_TTL > 0 then
  redis.call('PEXPIRE', KEYS[1], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[3], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[5], ROOM_TTL)
else
  redis.call('PERSIST', KEYS[5])
end
return {id, 1}
