-- Makes the room's epoch if it has none (a new room, or one whose history Redis lost) and reads
-- it into `epoch`. The epoch key is the script's last key. The epoch is Redis's clock at
-- creation, `<seconds>.<microseconds>`, so a history that starts over gets another one.
-- `SET NX GET` (Redis 7) answers the epoch already there, or nil (false in Lua) if it set ours.
local epoch_key = KEYS[#KEYS]
local clock = redis.call('TIME')
local made = string.format('%s.%06d', clock[1], tonumber(clock[2]))
local epoch = redis.call('SET', epoch_key, made, 'NX', 'GET') or made
