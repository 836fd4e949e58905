-- Makes the room's epoch if it has none (a new room, or one whose history Redis lost or let
-- expire) and reads it into `epoch`; keeps the room's keys alive. The script's last three keys are
-- the room's stream, trimmed marker and epoch. The epoch is Redis's clock at creation,
-- `<seconds>.<microseconds>`, so a history that starts over gets another one. `SET NX GET`
-- (Redis 7) answers the epoch already there, or nil (false in Lua) if it set ours.
-- Lifetimes (ROOM_TTL, KEEP_TTL, EMPTY_TTL: ms, set before this fragment): a room with history
-- keeps its keys for good with ROOM_TTL 0, else each use (this, or a publish) gives them ROOM_TTL
-- again (the epoch and side keys KEEP_TTL, when less than ROOM_TTL is left, see publish.lua); a
-- room without history (only joined) has an epoch that goes after EMPTY_TTL, so no name a client
-- joins leaves a key for good. A publish makes it the history's (publish.lua).
local stream_key, trimmed_key, epoch_key = KEYS[#KEYS - 2], KEYS[#KEYS - 1], KEYS[#KEYS]
local clock = redis.call('TIME')
local made = string.format('%s.%06d', clock[1], tonumber(clock[2]))
local epoch
if ROOM_TTL > 0 and redis.call('PEXPIRE', stream_key, ROOM_TTL) == 1 then
  redis.call('PEXPIRE', trimmed_key, ROOM_TTL)
  -- The epoch and the side keys of the room's messages (state.lua, read markers, named after the
  -- stream's) get KEEP_TTL when due, as a publish gives them (publish.lua).
  if redis.call('PTTL', epoch_key) < ROOM_TTL then
    local base = string.sub(stream_key, 1, -7)
    for _, kind in ipairs({'state', 'gone', 'erased', 'read', 'reactors'}) do
      redis.call('PEXPIRE', base .. kind, KEEP_TTL)
    end
    redis.call('PEXPIRE', epoch_key, KEEP_TTL)
  end
  epoch = redis.call('SET', epoch_key, made, 'NX', 'GET', 'PX', KEEP_TTL)
elseif ROOM_TTL == 0 and redis.call('EXISTS', stream_key) == 1 then
  epoch = redis.call('SET', epoch_key, made, 'NX', 'GET')
else
  epoch = redis.call('SET', epoch_key, made, 'NX', 'GET', 'PX', EMPTY_TTL)
end
epoch = epoch or made
