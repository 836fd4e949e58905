-- Moves a user's read marker forward (`Broker::read`) and counts what is unread after it.
-- After reads.lua. KEYS: stream, read markers. ARGV: user, id (0-0: only read the state), the cap
-- of unread counts. The marker never moves back nor past the stream's last id.
-- Returns {marker ('' for none), unread, moved (1/0)}.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if not last then return {'', 0, 0} end
local current = redis.call('HGET', KEYS[2], ARGV[1])
local marker = ARGV[2]
if id_less(last[1], marker) then marker = last[1] end
local moved = 0
if ARGV[2] ~= '0-0' and (not current or id_less(current, marker)) then
  redis.call('HSET', KEYS[2], ARGV[1], marker)
  -- KEEP_TTL, as a publish gives it (publish.lua): it outlives the stream.
  if ROOM_TTL > 0 then redis.call('PEXPIRE', KEYS[2], KEEP_TTL) end
  current = marker
  moved = 1
end
current = current or ''
local unread = unread_after(KEYS[1], side_key(KEYS[1], 'state'), current, tonumber(ARGV[3]))
return {current, unread, moved}
