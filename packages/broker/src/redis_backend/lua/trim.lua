-- Trimming a room's stream to `maxlen` entries, with what the room keeps about the entries that go
-- (state.lua): `trim_going` before the XADD (it remembers the newest id about to go in the trimmed
-- marker, so a recovery knows exactly which `since` values still have no gap, and returns the
-- entries going, or nil), `trim_state` after it (it drops their overlays and reactors, and the
-- tombstones and erased edits at or below the marker, and counts the change entries that go), so
-- the side keys stay bounded by the stream. After state.lua. A publish runs its own
-- trim_going (it defines no function) and trim_state only when it trims a room with changes.
local function trim_going(stream, trimmed_key, maxlen)
  local len = redis.call('XLEN', stream)
  if len < maxlen then return nil end
  local going = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - maxlen + 1)
  redis.call('SET', trimmed_key, going[#going][1])
  return going
end

-- Forgets message `id`'s overlay `overlay`, its edits' ids and its reactors (in batches: a
-- message may have any number).
local function forget_overlay(state, id, overlay)
  redis.call('HDEL', state, id, id .. '\nedits')
  local reactors = string.sub(state, 1, -6) .. 'reactors'
  for _, r in ipairs(parse_overlay(overlay).reactions) do
    local prefix = id .. '\n' .. r.emoji .. '\n'
    local from, to = '[' .. prefix, '(' .. id .. '\n' .. r.emoji .. '\v'
    while true do
      local batch = redis.call('ZRANGE', reactors, from, to, 'BYLEX', 'LIMIT', 0, 500)
      if #batch == 0 then break end
      local fields = {}
      for i, member in ipairs(batch) do
        fields[i] = prefix .. string.sub(member, #prefix + 43)
      end
      redis.call('HDEL', state, unpack(fields))
      redis.call('ZREM', reactors, unpack(batch))
    end
  end
end

-- Drops what the room keeps about the entries `going` (trimmed off the stream, oldest first):
-- their overlays and reactors, the count of change entries among them, and the tombstones and
-- erased edits at or below the newest of them. No EXISTS first: an HGET or ZRANGEBYSCORE of a
-- missing key costs the same (a publish calls it only if the state hash exists, publish.lua).
local function trim_state(stream, going)
  local state = side_key(stream, 'state')
  local changes = 0
  for _, entry in ipairs(going) do
    if is_change(entry) then
      changes = changes + 1
    else
      local overlay = redis.call('HGET', state, entry[1])
      if overlay then forget_overlay(state, entry[1], overlay) end
    end
  end
  count_changes(state, -changes)
  local last = going[#going][1]
  for _, kind in ipairs({'gone', 'erased'}) do
    local key = side_key(stream, kind)
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', (id_parts(last)))) do
      local id = string.sub(member, 1, string.find(member, '\n', 1, true) - 1)
      if not id_less(last, id) then redis.call('ZREM', key, member) end
    end
  end
end
