-- Stores a message in the room's stream and publishes it, in one step, so every node receives
-- messages in stream order.
-- KEYS: stream, channel, trimmed marker, dedup key (of the sender's nonce, or of the node's
-- own: every publish has one), epoch. ARGV: maxlen, encoded message, how long the dedup key
-- lives in ms (a sender's: the dedup window; the node's own: a few command timeouts), the id of
-- the message it replies to ('' for none). Returns {id, 1} when stored, {original id, 0} for a
-- retry of a message accepted within that time, {'', 2} for a reply to a message that is not a
-- retained, not deleted message of the room (nothing stored).
-- A plain message's entry is `d` only, its event `m<id>\n<encoded>`; a reply's adds `y` (the
-- id), its event is `y<id>\n<reply_to>\n<encoded>`.
-- The hot path: a plain publish runs the commands it ran before messages could change, and
-- defines no function. Only a publish that trims a room with changes (state.lua: the state hash
-- exists exactly while the stream holds a change entry, and tombstones and erased edits only
-- with one) runs state.lua and trim.lua, which scripts.rs puts in place of the TRIM_STATE line.
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
  -- A change entry (its first field `k`, state.lua) is no message to reply to.
  if not target or target[2][1] == 'k' then return {'', 2} end
end
-- Before trimming, remembers the newest id about to go, so a recovery knows exactly which
-- `since` values still have no gap (as trim_going in trim.lua, for a change).
local maxlen = tonumber(ARGV[1])
local len = redis.call('XLEN', KEYS[1])
local going
if len >= maxlen then
  going = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', len - maxlen + 1)
  redis.call('SET', KEYS[3], going[#going][1])
elseif len == 0 then
  -- A new history (or one trimmed to nothing): no side key of an older one (expired with
  -- `room_ttl` after its stream) lives on into it.
  local base = string.sub(KEYS[1], 1, -7)
  redis.call('DEL', base .. 'state', base .. 'gone', base .. 'erased', base .. 'read',
    base .. 'reactors')
end
local id
if reply == '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'd', ARGV[2])
  redis.call(PUBLISH, KEYS[2], 'm' .. id .. '\n' .. ARGV[2])
else
  id = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '*', 'd', ARGV[2], 'y', reply)
  redis.call(PUBLISH, KEYS[2], 'y' .. id .. '\n' .. reply .. '\n' .. ARGV[2])
end
redis.call('SET', dedup, id, 'PX', ARGV[3])
-- The room has history now: its keys live for good with ROOM_TTL 0 (the epoch a join made while
-- it had none included), else ROOM_TTL more. The epoch and side keys get KEEP_TTL (a quarter
-- more) when the epoch has less than ROOM_TTL left, so they outlive the stream while a publish
-- touches them at most once a quarter of ROOM_TTL (the PTTL stands for the epoch's PEXPIRE). In a
-- room without an epoch (-2: no join made one, which a server's connection does before it sends)
-- every publish gives them their lifetime.
if ROOM_TTL > 0 then
  redis.call('PEXPIRE', KEYS[1], ROOM_TTL)
  redis.call('PEXPIRE', KEYS[3], ROOM_TTL)
  if redis.call('PTTL', KEYS[5]) < ROOM_TTL then
    redis.call('PEXPIRE', KEYS[5], KEEP_TTL)
    local base = string.sub(KEYS[1], 1, -7)
    for _, kind in ipairs({'state', 'gone', 'erased', 'read', 'reactors'}) do
      redis.call('PEXPIRE', base .. kind, KEEP_TTL)
    end
  end
else
  redis.call('PERSIST', KEYS[5])
end
if going and redis.call('EXISTS', string.sub(KEYS[1], 1, -7) .. 'state') == 1 then
  -- TRIM_STATE
end
return {id, 1}
