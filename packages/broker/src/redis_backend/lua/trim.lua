-- Trimming a room's stream to `maxlen` entries, with what the room keeps about the entries that go
-- (state.lua): `trim_going` before the XADD (it remembers the newest id about to go in the trimmed
-- marker, so a recovery knows exactly which `since` values still have no gap, and returns the
-- entries going, or nil), `trim_state` after it (it drops their overlays and reactors, and the
-- tombstones and erased edits at or below the marker, and counts the change entries that go), so
-- the side keys stay bounded by the stream. After state.lua (only: the publish of a plain
-- message runs it).
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

-- How many of the room's side keys exist, with one EXISTS: none in a room that never changed a
-- message nor marked one read (most), whose publish then touches none of them.
local function side_keys_exist(stream)
  return redis.call('EXISTS', side_key(stream, 'state'), side_key(stream, 'gone'),
    side_key(stream, 'erased'), side_key(stream, 'read'), side_key(stream, 'reactors'))
end

-- `side`: what side_keys_exist answered (0: nothing to do), or nil if not asked.
local function trim_state(stream, going, side)
  if not going or side == 0 then return end
  local state = side_key(stream, 'state')
  if redis.call('EXISTS', state) == 1 then
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

-- Gives the room's side keys the room's lifetime (ROOM_TTL > 0 only); `side` as for trim_state.
local function expire_side_keys(stream, side)
  if side == 0 then return end
  for _, kind in ipairs({'state', 'gone', 'erased', 'read', 'reactors'}) do
    redis.call('PEXPIRE', side_key(stream, kind), ROOM_TTL)
  end
end
