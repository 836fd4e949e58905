-- Trimming a room's stream to `maxlen` entries, with what the room keeps about the entries that go
-- (state.lua): `trim_going` before the XADD (it remembers the newest id about to go in the trimmed
-- marker, so a recovery knows exactly which `since` values still have no gap, and returns the
-- entries going, or nil), `trim_state` after it (it drops their overlays and reactors, and the
-- tombstones and erased edits at or below the marker), so the side keys stay bounded by the
-- stream. The side keys are named after the stream key (`...:stream` -> `...:state`), so the
-- publish of a plain message passes no key more: the same room, the same slot. After state.lua.
local function trim_going(stream, trimmed_key, maxlen)
  local len = redis.call('XLEN', stream)
  if len < maxlen then return nil end
  local going = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen + 1)
  redis.call('SET', trimmed_key, going[#going][1])
  return going
end

-- The room key `kind` (state, gone, erased, read) of the room whose stream key is `stream`.
local function side_key(stream, kind)
  return string.sub(stream, 1, -7) .. kind
end

-- Forgets message `id`'s overlay `overlay` and its reactors.
local function forget_overlay(state, id, overlay)
  local fields = {id}
  for _, r in ipairs(parse_overlay(overlay).reactions) do
    fields[#fields + 1] = id .. '\n' .. r.emoji
  end
  redis.call('HDEL', state, unpack(fields))
end

local function trim_state(stream, going)
  if not going then return end
  local state = side_key(stream, 'state')
  -- A room that never changed a message (most) pays one EXISTS.
  if redis.call('EXISTS', state, side_key(stream, 'gone'), side_key(stream, 'erased')) == 0 then
    return
  end
  if redis.call('EXISTS', state) == 1 then
    for _, entry in ipairs(going) do
      if not is_change(entry) then
        local overlay = redis.call('HGET', state, entry[1])
        if overlay then forget_overlay(state, entry[1], overlay) end
      end
    end
  end
  local last = going[#going][1]
  for _, kind in ipairs({'gone', 'erased'}) do
    local key = side_key(stream, kind)
    if redis.call('EXISTS', key) == 1 then
      for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', (id_parts(last)))) do
        local id = string.sub(member, 1, string.find(member, '\n', 1, true) - 1)
        if not id_less(last, id) then redis.call('ZREM', key, member) end
      end
    end
  end
end

-- Gives the room's side keys the room's lifetime (ROOM_TTL > 0 only).
local function expire_side_keys(stream)
  for _, kind in ipairs({'state', 'gone', 'erased', 'read'}) do
    redis.call('PEXPIRE', side_key(stream, kind), ROOM_TTL)
  end
end
