-- Stores a message in the room's stream and publishes it, in one step, so every node receives
-- messages in stream order. After state.lua and trim.lua.
-- KEYS: stream, channel, trimmed marker, dedup key (of the sender's nonce, or of the node's
-- own: every publish has one), epoch. ARGV: maxlen, encoded message, how long the dedup key
-- lives in ms (a sender's: the dedup window; the node's own: a few command timeouts), the id of
-- the message it replies to ('' for none). Returns {id, 1} when stored, {original id, 0} for a
-- retry of a message accepted within that time, {'', 2} for a reply to a message that is not a
-- retained, not deleted message of the room (nothing stored).
-- A plain message's entry is `d` only, its event `m<id>\n<encoded>`; a reply's adds `y` (the
-- id), its event is `y<id>\n<reply_to>\n<encoded>`. The room has history now: its keys live for
-- good with ROOM_TTL 0 (the epoch a join made while it had none included), else ROOM_TTL more.
local dedup = KEYS[4]
local original = redis.call('GET', dedup)
if original then
  -- Written again (as it was): a write of this connection after the original's, so that a
  -- `WAIT` after this retry covers the original too (replication keeps the order).
  redis.call('SET', dedup, original, 'KEEPTTL')
  return {original, 0}
end
local reply = ARGV[4]
if reply ~= '' then
  local target = redis.call('XRANGE', KEYS[1], reply, reply)[1]
  if not target or is_change(target) then return {'', 2} end
end
local maxlen = tonumber(ARGV[1])
local going = trim_going(KEYS[1], KEYS[3], maxlen)
local id
if reply == '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'd', ARGV[2])
  redis.call(PUBLISH, KEYS[2], 'm' .. id .. '\n' .. ARGV[2])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'd', ARGV[2], 'y', reply)
  redis.call(PUBLISH, KEYS[2], 'y' .. id .. '\n' .. reply .. '\n' .. ARGV[2])
end
-- The side keys are looked up (one EXISTS) only when the stream trims or the room's keys
-- expire, and touched only if some exist.
local side = 0
if going or ROOM_TTL > 0 then side = side_keys_exist(KEYS[1]) end
trim_state(KEYS[1], going, side)
redis.call('SET', dedup, id, 'PX', ARGV[3])
if ROOM_TTL > 0 then
  redis.call('PEXPIRE', KEYS[1], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[3], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[5], ROOM_TTL)
  expire_side_keys(KEYS[1], side)
else
  redis.call('PERSIST', KEYS[5])
end
return {id, 1}
